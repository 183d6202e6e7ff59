// One job, live: WatchJob (snapshot, then every event; resumed from the last seq after a drop),
// a progress bar, the event timeline, StreamJobLogs with follow, and Cancel / Retry.
import { Code, ConnectError } from "@connectrpc/connect";
import { jobs, STREAM } from "../api";
import { h, replace, sleep } from "../dom";
import { AllocationParadigmSchema, JobState, type Job, type JobEvent } from "../gen/dmod/v1/jobs_pb";
import { PartitionMethodSchema } from "../gen/dmod/v1/partitioner_pb";
import { errorBox, isAbort } from "../errors";
import { bytes, enumLabel, shortId, time } from "../format";
import { href } from "../router";
import { actionButton, kv, link, progressBar } from "../widgets";
import { logPanel } from "./joblogs";
import { canCancel, canRetry, stateBadge, TERMINAL } from "./jobstate";

/** Errors after which reconnecting cannot help. */
const FINAL = new Set([Code.NotFound, Code.InvalidArgument, Code.PermissionDenied, Code.Unimplemented,
  Code.Unauthenticated, Code.FailedPrecondition]);

function datasetLink(name: string): HTMLElement | string {
  return name ? link(href("datasets", shortId(name)), h("code", null, shortId(name))) : "";
}

function summary(job: Job): HTMLElement {
  const s = job.spec;
  const range = s?.startTime && s?.endTime ? `${time(s.startTime)} → ${time(s.endTime)}` : "";
  return kv([
    ["owner", job.owner],
    ["attempt", job.attempt ? String(job.attempt) : ""],
    ["model", s?.model || "ngen"],
    ["engine", s?.engine || "auto"],
    ["time range", range],
    ["cpus", s ? String(s.cpuCount) : ""],
    ["allocation", s?.allocationParadigm ? enumLabel(AllocationParadigmSchema, s.allocationParadigm) : ""],
    ["partitioning", s?.partitionMethod ? enumLabel(PartitionMethodSchema, s.partitionMethod) : ""],
    ["hydrofabric", datasetLink(s?.hydrofabricDataset ?? "")],
    ["realization", datasetLink(s?.realizationDataset ?? "")],
    ["forcing", datasetLink(s?.forcingDataset ?? "")],
    ["resolved inputs", Object.keys(job.resolvedDatasets).length > 0 && h("ul", { class: "plain" },
      Object.entries(job.resolvedDatasets).map(([role, name]) => h("li", null, `${role}: `, datasetLink(name))))],
    ["launcher", job.launcher],
    ["allocations", job.allocations.map((a) =>
      `${a.node} × ${a.cpus} cpu${a.memoryBytes ? ` ${bytes(a.memoryBytes)}` : ""}`).join(", ")],
    ["output", datasetLink(job.outputDataset)],
    ["evaluation", job.evaluation ? link(href("evaluations", shortId(job.evaluation)), shortId(job.evaluation)) : ""],
    ["created", time(job.createTime)],
    ["started", time(job.startTime)],
    ["ended", time(job.endTime)],
    ["reason", job.stateReason ? h("span", null, h("code", null, job.stateReason), " ", job.stateMessage) : job.stateMessage],
  ]);
}

function eventRow(e: JobEvent): HTMLElement[] {
  return [h("span", null, String(e.seq)), h("span", { class: "muted" }, time(e.time)), stateBadge(e.state),
    h("code", null, e.reason), h("span", null, e.message)];
}

export async function jobView(outlet: HTMLElement, [id]: string[], signal: AbortSignal): Promise<void> {
  const name = `jobs/${id}`;
  const head = h("div", { class: "toolbar" });
  const bar = h("div");
  const info = h("div");
  const status = h("div", { class: "stream-status muted" });
  const errors = h("div");
  const timeline = h("tbody");
  const logs = logPanel(name, signal);
  outlet.replaceChildren(head, errors, bar, status, h("div", { class: "columns" },
    h("section", null, h("h2", null, "Details"), info),
    h("section", null, h("h2", null, "Events"),
      h("table", { class: "timeline" }, h("thead", null, h("tr", null,
        ["seq", "time", "state", "reason", "message"].map((t) => h("th", null, t)))), timeline))),
    h("section", null, h("h2", null, "Logs"), logs.element));

  let job: Job | undefined;
  let lastSeq = 0n;
  let watching = false;

  const render = () => {
    if (!job) return;
    const p = job.progress;
    replace(head,
      h("h1", null, "Job ", h("code", null, id)),
      h("span", { class: "job-state", "data-state": JobState[job.state] }, stateBadge(job.state)),
      actionButton("Cancel", "cancelling the job", async () => {
        job = (await jobs.cancelJob({ name })).job ?? job;
        render();
      }, errors, { disabled: !canCancel(job.state), class: "danger" }),
      actionButton("Retry", "retrying the job", async () => {
        job = (await jobs.retryJob({ name })).job ?? job;
        render();
        void watch();
        logs.restart();
      }, errors, { disabled: !canRetry(job.state) }));
    replace(bar, p && p.totalSteps > 0n ? progressBar(p.step, p.totalSteps)
      : progressBar(0, 0, TERMINAL.has(job.state) ? "" : "waiting for progress…"));
    replace(info, summary(job));
  };

  const refresh = async () => {
    try {
      job = (await jobs.getJob({ name }, { signal })).job ?? job;
      render();
    } catch (err) {
      if (!isAbort(err)) errors.append(errorBox(err, "reading the job"));
    }
  };

  const apply = (e: JobEvent) => {
    if (e.seq <= lastSeq) return; // a resumed stream never repeats, but be safe
    lastSeq = e.seq;
    timeline.append(h("tr", { "data-seq": String(e.seq) }, eventRow(e).map((c) => h("td", null, c))));
    if (!job) return;
    const changed = job.state !== e.state;
    job.state = e.state;
    if (e.progress) job.progress = e.progress;
    if (e.attempt) job.attempt = e.attempt;
    if (changed) {
      job.stateReason = e.reason;
      job.stateMessage = e.message;
      void refresh(); // outputs, allocations and times change with the state
    }
    render();
  };

  const watch = async () => {
    if (watching) return;
    watching = true;
    let backoff = 500;
    try {
      while (!signal.aborted) {
        try {
          replace(status, "live");
          for await (const reply of jobs.watchJob({ name, afterSeq: lastSeq }, { signal, ...STREAM })) {
            backoff = 500;
            if (reply.payload.case === "snapshot") {
              job = reply.payload.value;
              render();
            } else if (reply.payload.case === "event") {
              apply(reply.payload.value);
            }
          }
          if (job && TERMINAL.has(job.state)) {
            replace(status, "finished");
            return;
          }
        } catch (err) {
          if (isAbort(err)) return;
          if (err instanceof ConnectError && FINAL.has(err.code)) {
            replace(status);
            replace(errors, errorBox(err, "watching the job"));
            if (!job) await refresh();
            return;
          }
          replace(status, `connection lost; reconnecting in ${(backoff / 1000).toFixed(1)} s…`);
        }
        await sleep(backoff, signal);
        backoff = Math.min(backoff * 2, 15_000);
      }
    } catch (err) {
      if (!isAbort(err)) throw err;
    } finally {
      watching = false;
    }
  };

  replace(head, h("h1", null, "Job ", h("code", null, id)));
  void watch();
}
