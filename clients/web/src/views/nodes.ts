// The node pool (ListNodes) and the workers the monitor follows (ListWorkers), refreshed.
import { jobs, monitor } from "../api";
import { every, h, replace } from "../dom";
import { bytes, shortId, time } from "../format";
import { href } from "../router";
import { badge, link, loadInto, progressBar, table } from "../widgets";

const REFRESH_MS = 5_000;

export async function nodesView(outlet: HTMLElement, _params: string[], signal: AbortSignal): Promise<void> {
  const nodes = h("div");
  const workers = h("div");
  replace(outlet, h("div", { class: "toolbar" }, h("h1", null, "Node pool")), nodes,
    h("h2", null, "Workers"), workers);
  await every(REFRESH_MS, signal, async () => {
    await Promise.all([
      loadInto(nodes, "listing nodes", async () => {
        const reply = await jobs.listNodes({}, { signal });
        return table(["node", "host", "ready", "cpus", "memory"], reply.nodes.map((n) => [
          h("code", null, n.name), h("span", null, n.hostname),
          badge(n.ready ? "READY" : "DOWN", n.ready ? "ok" : "bad"),
          progressBar(n.allocatedCpus, n.cpus, `${n.allocatedCpus} / ${n.cpus} allocated`),
          n.memoryBytes > 0n ? progressBar(n.allocatedMemoryBytes, n.memoryBytes,
            `${bytes(n.allocatedMemoryBytes)} / ${bytes(n.memoryBytes)}`) : "",
        ]), "No nodes registered.");
      }),
      loadInto(workers, "listing workers", async () => {
        const reply = await monitor.listWorkers({}, { signal });
        return table(["job", "attempt", "backend", "handle", "state", "last heartbeat"], reply.workers.map((w) => [
          link(href("jobs", shortId(w.job)), h("code", null, shortId(w.job))), h("span", null, String(w.attempt)),
          h("span", null, w.backend), h("code", null, w.handle), h("span", null, w.state),
          h("span", { class: "muted" }, time(w.lastHeartbeatTime)),
        ]), "No workers running.");
      }),
    ]);
  });
}
