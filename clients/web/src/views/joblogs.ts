// A job's log: StreamJobLogs from the last line seen, following new lines while "follow" is on.
import { Code, ConnectError } from "@connectrpc/connect";
import { jobs, STREAM } from "../api";
import { h, replace, sleep } from "../dom";
import type { LogLine } from "../gen/dmod/v1/jobs_pb";
import { errorBox, isAbort } from "../errors";
import { time } from "../format";

const MAX_LINES = 5_000;
const FINAL = new Set([Code.NotFound, Code.InvalidArgument, Code.PermissionDenied, Code.Unimplemented,
  Code.Unauthenticated]);

export function logPanel(name: string, signal: AbortSignal): { element: HTMLElement; restart: () => void } {
  const pre = h("pre", { class: "log", "aria-live": "polite" });
  const status = h("span", { class: "muted" });
  const errors = h("div");
  const follow = h("input", { type: "checkbox", checked: true, name: "follow" });
  let lastSeq = 0n;
  let stream: AbortController | null = null;

  const appendLines = (lines: LogLine[]) => {
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
    for (const line of lines) {
      if (line.seq <= lastSeq) continue;
      lastSeq = line.seq;
      pre.append(h("span", { class: line.stream === "stderr" ? "stderr" : "", title: time(line.time) },
        h("span", { class: "rank" }, `[${line.rank}] `), line.text.replace(/\n$/, ""), "\n"));
    }
    while (pre.childNodes.length > MAX_LINES) pre.firstChild?.remove();
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  };

  const run = async (own: AbortController) => {
    let backoff = 500;
    while (!own.signal.aborted) {
      try {
        replace(status, follow.checked ? "following" : "reading");
        for await (const reply of jobs.streamJobLogs({ name, afterSeq: lastSeq, follow: follow.checked },
          { signal: own.signal, ...STREAM })) {
          backoff = 500;
          appendLines(reply.lines);
        }
        replace(status, "end of log");
        return;
      } catch (err) {
        if (isAbort(err) || own.signal.aborted) return;
        if (!follow.checked || (err instanceof ConnectError && FINAL.has(err.code))) {
          replace(status);
          replace(errors, errorBox(err, "streaming the job's logs"));
          return;
        }
        replace(status, "connection lost; reconnecting…");
      }
      try {
        await sleep(backoff, own.signal);
      } catch {
        return;
      }
      backoff = Math.min(backoff * 2, 15_000);
    }
  };

  const restart = () => {
    stream?.abort();
    replace(errors);
    const own = new AbortController();
    signal.addEventListener("abort", () => own.abort(), { once: true });
    stream = own;
    void run(own);
  };

  follow.addEventListener("change", restart);
  restart();
  return {
    element: h("div", null, h("div", { class: "toolbar" }, h("label", null, follow, " follow"), status), errors, pre),
    restart,
  };
}
