// Jobs list: state filter, paging, auto-refresh.
import { jobs } from "../api";
import { every, h } from "../dom";
import { JobState, JobStateSchema, type Job } from "../gen/dmod/v1/jobs_pb";
import { enumOptions, shortId, time } from "../format";
import { href } from "../router";
import { link, Pager, progressBar, table } from "../widgets";
import { ACTIVE, stateBadge, TERMINAL } from "./jobstate";

const PAGE_SIZE = 25;
const REFRESH_MS = 5_000;

const FILTERS: Record<string, JobState[]> = {
  all: [],
  active: ACTIVE,
  finished: [...TERMINAL],
  ...Object.fromEntries(enumOptions(JobStateSchema).map(([n, label]) => [label.toLowerCase(), [n as JobState]])),
};

let filter = "all";

export function jobRow(job: Job): (HTMLElement | string)[] {
  const id = shortId(job.name);
  const p = job.progress;
  return [
    link(href("jobs", id), h("code", null, id)),
    stateBadge(job.state),
    p && p.totalSteps > 0n ? progressBar(p.step, p.totalSteps) : "",
    h("span", null, String(job.spec?.cpuCount ?? "")),
    h("span", null, job.owner),
    h("span", { class: "muted" }, time(job.createTime)),
    h("span", { class: "muted" }, job.stateReason),
  ];
}

export async function jobsView(outlet: HTMLElement, _params: string[], signal: AbortSignal): Promise<void> {
  const pager = new Pager("listing jobs", async (pageToken) => {
    const reply = await jobs.listJobs({ pageSize: PAGE_SIZE, pageToken, states: FILTERS[filter] }, { signal });
    return {
      content: table(["job", "state", "progress", "cpus", "owner", "created", "reason"], reply.jobs.map(jobRow),
        "No jobs match."),
      next: reply.nextPageToken,
    };
  });
  const select = h("select", { name: "state", "aria-label": "state filter",
    onchange: () => { filter = select.value; void pager.reset(); } },
    Object.keys(FILTERS).map((key) => h("option", { value: key, selected: key === filter }, key)));
  outlet.replaceChildren(
    h("div", { class: "toolbar" },
      h("h1", null, "Jobs"),
      h("label", null, "State ", select),
      h("a", { class: "button primary", href: "#/jobs/new" }, "New job")),
    pager.element);
  void every(REFRESH_MS, signal, () => pager.reload());
}

