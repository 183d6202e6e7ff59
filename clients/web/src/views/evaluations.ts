// Evaluations list and one evaluation: live state (WatchEvaluation), metrics tables, hydrograph PNGs.
import { Code, ConnectError } from "@connectrpc/connect";
import { datasets, evaluations, STREAM } from "../api";
import { h, replace, sleep } from "../dom";
import { EvaluationState, EvaluationStateSchema, type Evaluation } from "../gen/dmod/v1/evaluation_pb";
import { errorBox, isAbort } from "../errors";
import { enumLabel, num, shortId, time } from "../format";
import { href } from "../router";
import { downloadUrl } from "../upload";
import { badge, kv, link, Pager, progressBar, table } from "../widgets";
import { downloadButton } from "./dataset";

const PAGE_SIZE = 25;
const DONE = new Set([EvaluationState.SUCCEEDED, EvaluationState.FAILED]);

function stateBadge(state: EvaluationState): HTMLElement {
  return badge(enumLabel(EvaluationStateSchema, state),
    state === EvaluationState.SUCCEEDED ? "ok" : state === EvaluationState.FAILED ? "bad" : "busy");
}

function datasetLink(name: string): HTMLElement | string {
  return name ? link(href("datasets", shortId(name)), h("code", null, shortId(name))) : "";
}

export async function evaluationsView(outlet: HTMLElement, _params: string[], signal: AbortSignal): Promise<void> {
  const job = h("input", { name: "job", placeholder: "jobs/{id} (optional)" });
  const pager = new Pager("listing evaluations", async (pageToken) => {
    const reply = await evaluations.listEvaluations({ pageSize: PAGE_SIZE, pageToken, job: job.value.trim() },
      { signal });
    return {
      content: table(["evaluation", "state", "locations", "job", "output", "created", "aggregate"],
        reply.evaluations.map((e) => [
          link(href("evaluations", shortId(e.name)), h("code", null, shortId(e.name))),
          stateBadge(e.state),
          h("span", null, `${e.locationsDone}/${e.locationsTotal}`),
          e.job ? link(href("jobs", shortId(e.job)), h("code", null, shortId(e.job))) : "",
          datasetLink(e.spec?.outputDataset ?? ""),
          h("span", { class: "muted" }, time(e.createTime)),
          h("span", { class: "muted" }, Object.entries(e.aggregate).slice(0, 3)
            .map(([k, v]) => `${k} ${num(v)}`).join(" · ")),
        ]), "No evaluations yet."),
      next: reply.nextPageToken,
    };
  });
  job.addEventListener("change", () => void pager.reset());
  outlet.replaceChildren(h("div", { class: "toolbar" }, h("h1", null, "Evaluations"), h("label", null, "Job ", job)),
    pager.element);
  await pager.reload();
}

function metricsTables(e: Evaluation): HTMLElement {
  const names = [...new Set(e.locations.flatMap((l) => Object.keys(l.metrics)))].sort();
  const aggregate = Object.entries(e.aggregate).sort(([a], [b]) => a.localeCompare(b));
  return h("div", null,
    h("h2", null, "Aggregate"),
    table(["metric", "value"], aggregate.map(([k, v]) => [h("span", null, k), h("span", { class: "num" }, num(v))]),
      "No aggregate metrics yet."),
    h("h2", null, "Locations"),
    h("div", { class: "scroll" }, table(["gage", "nexus", "pairs", ...names, "error"], e.locations.map((l) => [
      h("code", null, l.gageId), h("code", null, l.nexusId), h("span", { class: "num" }, String(l.pairCount)),
      ...names.map((m) => h("span", { class: "num" }, m in l.metrics ? num(l.metrics[m]) : "")),
      h("span", { class: "bad-text" }, l.error)]), "No locations evaluated yet.")));
}

async function results(resultDataset: string, signal: AbortSignal): Promise<HTMLElement> {
  const { objects } = await datasets.listObjects({ parent: resultDataset, pageSize: 200 }, { signal });
  const pngs = objects.filter((o) => o.path.toLowerCase().endsWith(".png"));
  const figures = await Promise.all(pngs.map(async (o) => {
    const url = await downloadUrl(o.name, signal);
    return h("figure", null, h("a", { href: url, target: "_blank", rel: "noopener" },
      h("img", { src: url, alt: o.path, loading: "lazy" })), h("figcaption", null, o.path));
  }));
  const files = objects.filter((o) => !pngs.includes(o));
  return h("div", null,
    figures.length > 0 ? h("div", { class: "figures" }, figures) : h("p", { class: "muted" }, "No hydrographs."),
    table(["file", ""], files.map((o) => [h("code", null, o.path), downloadButton(o)]), ""));
}

export async function evaluationView(outlet: HTMLElement, [id]: string[], signal: AbortSignal): Promise<void> {
  const name = `evaluations/${id}`;
  const head = h("div", { class: "toolbar" }, h("h1", null, "Evaluation ", h("code", null, id)));
  const errors = h("div");
  const bar = h("div");
  const info = h("div");
  const metrics = h("div");
  const files = h("section");
  outlet.replaceChildren(head, errors, bar, h("div", { class: "columns" },
    h("section", null, h("h2", null, "Details"), info), h("section", null, metrics)), files);

  let shownResults = "";
  const render = (e: Evaluation) => {
    replace(head, h("h1", null, "Evaluation ", h("code", null, id)), stateBadge(e.state));
    replace(bar, progressBar(e.locationsDone, e.locationsTotal));
    const s = e.spec;
    replace(info, kv([
      ["job", e.job ? link(href("jobs", shortId(e.job)), h("code", null, shortId(e.job))) : ""],
      ["output", datasetLink(s?.outputDataset ?? "")],
      ["observations", datasetLink(s?.observationDataset ?? "")],
      ["hydrofabric", datasetLink(s?.hydrofabricDataset ?? "")],
      ["metrics", s?.metrics.join(", ") || "all"],
      ["window", s?.startTime ? `${time(s.startTime)} → ${time(s.endTime)}` : ""],
      ["results", datasetLink(e.resultDataset)],
      ["message", e.stateMessage],
      ["created", time(e.createTime)],
      ["updated", time(e.updateTime)],
    ]));
    replace(metrics, metricsTables(e));
    if (e.resultDataset && DONE.has(e.state) && shownResults !== e.resultDataset) {
      shownResults = e.resultDataset;
      replace(files, h("h2", null, "Results"), h("p", { class: "muted" }, "Loading…"));
      results(e.resultDataset, signal)
        .then((content) => replace(files, h("h2", null, "Results"), content))
        .catch((err) => { if (!isAbort(err)) replace(files, h("h2", null, "Results"), errorBox(err, "listing results")); });
    }
  };

  let first: Evaluation | undefined;
  try {
    first = (await evaluations.getEvaluation({ name }, { signal })).evaluation;
  } catch (err) {
    if (!isAbort(err)) replace(errors, errorBox(err, "reading the evaluation"));
    return;
  }
  if (first) render(first);
  if (first && DONE.has(first.state)) return;
  let backoff = 500;
  while (!signal.aborted) {
    try {
      for await (const reply of evaluations.watchEvaluation({ name }, { signal, ...STREAM })) {
        backoff = 500;
        if (!reply.evaluation) continue;
        render(reply.evaluation);
        if (DONE.has(reply.evaluation.state)) return;
      }
    } catch (err) {
      if (isAbort(err)) return;
      if (err instanceof ConnectError && err.code !== Code.Unavailable && err.code !== Code.Unknown) {
        replace(errors, errorBox(err, "watching the evaluation"));
        return;
      }
    }
    await sleep(backoff, signal);
    backoff = Math.min(backoff * 2, 15_000);
  }
}
