// Job state helpers shared by the job views.
import { JobState, JobStateSchema } from "../gen/dmod/v1/jobs_pb";
import { enumLabel } from "../format";
import { badge } from "../widgets";

export const TERMINAL = new Set([JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED]);
export const ACTIVE = Object.values(JobState)
  .filter((s): s is JobState => typeof s === "number" && s !== JobState.UNSPECIFIED && !TERMINAL.has(s));

export function stateBadge(state: JobState): HTMLElement {
  const kind = state === JobState.SUCCEEDED ? "ok" : state === JobState.FAILED ? "bad"
    : TERMINAL.has(state) || state === JobState.CANCELLING ? "off" : "busy";
  return badge(enumLabel(JobStateSchema, state), kind);
}

export function canCancel(state: JobState): boolean {
  return !TERMINAL.has(state) && state !== JobState.CANCELLING && state !== JobState.UNSPECIFIED;
}

export function canRetry(state: JobState): boolean {
  return state === JobState.FAILED || state === JobState.CANCELLED;
}
