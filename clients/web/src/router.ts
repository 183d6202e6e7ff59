// Hash routing: "#/jobs/abc" -> the jobs detail view. Each view gets an AbortSignal that fires when
// the user navigates away, so its streams and polling stop.
import { h, replace } from "./dom";
import { errorBox, isAbort } from "./errors";

export type View = (outlet: HTMLElement, params: string[], signal: AbortSignal) => void | Promise<void>;

const routes: [RegExp, View][] = [];
let current: AbortController | null = null;

export function route(pattern: RegExp, view: View): void {
  routes.push([pattern, view]);
}

export function href(...parts: string[]): string {
  return "#/" + parts.map(encodeURIComponent).join("/");
}

export function navigate(target: string): void {
  location.hash = target;
}

export function start(outlet: HTMLElement, nav: HTMLElement, fallback: string): void {
  const render = async () => {
    current?.abort();
    const controller = new AbortController();
    current = controller;
    const path = location.hash.replace(/^#/, "") || "/";
    const found = routes.map(([re, view]) => [re.exec(path), view] as const).find(([m]) => m);
    if (!found) {
      navigate(fallback);
      return;
    }
    const [match, view] = found;
    for (const a of nav.querySelectorAll<HTMLAnchorElement>("a")) {
      a.classList.toggle("active", path.startsWith(a.getAttribute("href")!.slice(1)));
    }
    replace(outlet, h("p", { class: "muted" }, "Loading…"));
    try {
      await view(outlet, match!.slice(1).map(decodeURIComponent), controller.signal);
    } catch (err) {
      if (!isAbort(err) && current === controller) replace(outlet, errorBox(err, "showing this page"));
    }
  };
  window.addEventListener("hashchange", render);
  void render();
}
