// Rendering RPC failures: status code, message, ErrorInfo reason and BadRequest field violations.
import { Code, ConnectError } from "@connectrpc/connect";
import { h } from "./dom";
import { BadRequestSchema, ErrorInfoSchema } from "./rpc/wellknown";

export interface Problem {
  code: string;
  message: string;
  reason: string;
  metadata: Record<string, string>;
  violations: { field: string; description: string }[];
}

/** "InvalidArgument" -> "INVALID_ARGUMENT". */
function codeName(code: Code): string {
  return Code[code].replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

export function isAbort(err: unknown): boolean {
  if (err instanceof ConnectError) return err.code === Code.Canceled;
  return err instanceof DOMException && err.name === "AbortError";
}

export function toProblem(err: unknown): Problem {
  if (!(err instanceof ConnectError)) {
    return { code: "CLIENT", message: err instanceof Error ? err.message : String(err), reason: "",
      metadata: {}, violations: [] };
  }
  const info = err.findDetails(ErrorInfoSchema)[0];
  const violations = err.findDetails(BadRequestSchema).flatMap((b) =>
    b.fieldViolations.map((v) => ({ field: v.field, description: v.description })));
  return {
    code: codeName(err.code),
    message: err.rawMessage,
    reason: info?.reason ?? "",
    metadata: { ...(info?.metadata ?? {}) },
    violations,
  };
}

/** Whether retrying the same call may succeed (the outcome of a failed write is unknown). */
export function isTransient(err: unknown): boolean {
  return err instanceof ConnectError &&
    [Code.Unavailable, Code.DeadlineExceeded, Code.Unknown, Code.Aborted, Code.Internal].includes(err.code);
}

/** A readable error box; `doing` says what failed ("listing jobs"). */
export function errorBox(err: unknown, doing: string): HTMLElement {
  const p = toProblem(err);
  const unimplemented = p.code === "UNIMPLEMENTED";
  const headline = unimplemented
    ? `Not available yet: the server does not implement ${doing}.`
    : `Failed ${doing}: ${p.message || p.code}`;
  const meta = Object.entries(p.metadata).map(([k, v]) => `${k}=${v}`).join(" ");
  return h("div", { class: "error", role: "alert", "data-code": p.code, "data-reason": p.reason },
    h("strong", null, headline),
    h("div", { class: "muted" }, p.code, p.reason && p.reason !== p.code ? ` · ${p.reason}` : "", meta && ` · ${meta}`),
    p.violations.length > 0 && h("ul", { class: "violations" },
      p.violations.map((v) => h("li", { "data-field": v.field }, h("code", null, v.field), ": ", v.description))),
  );
}

/** Marks form controls named by violations (`data-field`, matching "spec.x" and "x" alike). */
export function markFields(form: HTMLElement, err: unknown): void {
  clearFields(form);
  for (const v of toProblem(err).violations) {
    for (const control of form.querySelectorAll<HTMLElement>("[data-field]")) {
      const field = control.dataset.field ?? "";
      const matches = [v.field, `spec.${v.field}`, `dataset.${v.field}`].some((candidate) =>
        candidate === field || candidate.startsWith(`${field}.`) || candidate.startsWith(`${field}[`));
      if (!matches) continue;
      control.classList.add("invalid");
      control.insertAdjacentElement("afterend", h("span", { class: "field-error" }, v.description));
    }
  }
}

export function clearFields(form: HTMLElement): void {
  form.querySelectorAll(".field-error").forEach((e) => e.remove());
  form.querySelectorAll(".invalid").forEach((e) => e.classList.remove("invalid"));
}
