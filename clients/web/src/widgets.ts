// Small reusable pieces: tables, key/value lists, progress bars, pagers, action buttons.
import { h, replace, type Child } from "./dom";
import { errorBox, isAbort } from "./errors";
import { percent } from "./format";

export function table(headers: string[], rows: Child[][], empty = "Nothing here yet."): HTMLElement {
  if (rows.length === 0) return h("p", { class: "muted empty" }, empty);
  return h("table", null,
    h("thead", null, h("tr", null, headers.map((name) => h("th", null, name)))),
    h("tbody", null, rows.map((cells) => h("tr", null, cells.map((cell) => h("td", null, cell))))));
}

export function kv(pairs: [string, Child][]): HTMLElement {
  return h("dl", { class: "kv" }, pairs
    .filter(([, value]) => value !== "" && value !== null && value !== undefined && value !== false)
    .map(([key, value]) => [h("dt", null, key), h("dd", null, value)]));
}

export function progressBar(step: bigint | number, total: bigint | number, label?: string): HTMLElement {
  const pct = percent(step, total);
  const text = label ?? (Number(total) > 0 ? `${step} / ${total} (${pct.toFixed(0)}%)` : "");
  const bar = h("div", { class: "bar" });
  bar.style.width = `${pct.toFixed(1)}%`; // CSSOM, allowed by the page's CSP (style attributes are not)
  return h("div", { class: "progress", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100,
    "aria-valuenow": pct.toFixed(0) }, bar, h("span", null, text));
}

export function badge(text: string, kind = ""): HTMLElement {
  return h("span", { class: `badge ${kind}`, "data-state": text }, text);
}

export function link(href: string, text: Child): HTMLElement {
  return h("a", { href }, text);
}

/**
 * A button that runs `action`, disabled while it runs; failures land in `errors`
 * (or next to the button when none is given).
 */
export function actionButton(label: string, doing: string, action: () => Promise<void>,
  errors?: HTMLElement, attrs: Record<string, unknown> = {}): HTMLButtonElement {
  const button = h("button", { type: "button", ...attrs }, label);
  button.addEventListener("click", async () => {
    const box = errors ?? button.parentElement;
    box?.querySelectorAll(":scope > .error").forEach((e) => e.remove());
    button.disabled = true;
    try {
      await action();
    } catch (err) {
      if (!isAbort(err)) box?.append(errorBox(err, doing));
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

/**
 * Page-token paging: `load(token)` fetches one page and returns what to show plus the next
 * token; the pager keeps earlier pages' tokens for "Previous" and shows load errors in place.
 */
export class Pager {
  private tokens: string[] = [""];
  private readonly results = h("div", { class: "results" });
  private readonly controls = h("div", { class: "pager" });
  readonly element = h("div", null, this.results, this.controls);

  constructor(private readonly doing: string,
    private readonly load: (token: string) => Promise<{ content: Child; next: string }>) {}

  reset(): Promise<void> {
    this.tokens = [""];
    return this.reload();
  }

  async reload(): Promise<void> {
    const page = this.tokens.length;
    let next = "";
    try {
      const result = await this.load(this.tokens[page - 1]);
      next = result.next;
      replace(this.results, result.content);
    } catch (err) {
      if (isAbort(err)) return;
      replace(this.results, errorBox(err, this.doing));
    }
    replace(this.controls,
      h("button", { type: "button", disabled: page === 1, onclick: () => this.go(-1) }, "‹ Previous"),
      h("span", { class: "muted" }, `page ${page}`),
      h("button", { type: "button", disabled: !next, onclick: () => this.go(1, next) }, "Next ›"));
  }

  private go(delta: number, next = ""): Promise<void> {
    if (delta > 0) this.tokens.push(next);
    else if (this.tokens.length > 1) this.tokens.pop();
    return this.reload();
  }
}

/** A region that shows its content or the error of loading it. */
export async function loadInto(target: HTMLElement, doing: string, render: () => Promise<Child>): Promise<void> {
  try {
    const content = await render();
    replace(target, content);
  } catch (err) {
    if (isAbort(err)) return;
    replace(target, errorBox(err, doing));
  }
}
