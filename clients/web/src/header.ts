// The header: gateway/service health (grpc.health.v1 over grpc-web) and the signed-in user.
import { auth, health, SERVICES, setToken, token } from "./api";
import { every, h, replace } from "./dom";
import { clearFields, errorBox, isAbort, markFields, toProblem } from "./errors";
import { ServingStatus } from "./rpc/wellknown";

const HEALTH_EVERY_MS = 15_000;

/** Shows the current page again, as the new identity sees it. */
function rerender(): void {
  window.dispatchEvent(new HashChangeEvent("hashchange"));
}

async function check(service: string): Promise<ServingStatus | "DOWN"> {
  try {
    return (await health.check({ service }, { timeoutMs: 5_000 })).status;
  } catch {
    return "DOWN";
  }
}

/** Polls health; `data-health` on the element is serving | degraded | down (used by tests). */
export function healthHeader(): HTMLElement {
  const el = h("div", { class: "health", "data-health": "unknown" }, h("span", { class: "muted" }, "checking…"));
  const signal = new AbortController().signal;
  void every(HEALTH_EVERY_MS, signal, async () => {
    const names = SERVICES.map((s) => s.typeName);
    const statuses = await Promise.all(names.map(check));
    const serving = statuses.filter((s) => s === ServingStatus.SERVING).length;
    const overall = serving === names.length ? "serving" : statuses.every((s) => s === "DOWN") ? "down" : "degraded";
    el.dataset.health = overall;
    replace(el,
      h("span", { class: `dot ${overall}`, title: overall }),
      h("span", null, overall === "serving" ? "all services up" : overall === "down" ? "gateway unreachable"
        : `${serving}/${names.length} services up`),
      h("span", { class: "services" }, names.map((name, i) => {
        const ok = statuses[i] === ServingStatus.SERVING;
        const state = statuses[i] === "DOWN" ? "DOWN" : ServingStatus[statuses[i] as ServingStatus];
        return h("span", { class: `svc ${ok ? "ok" : "bad"}`, title: `${name}: ${state}`, "data-service": name },
          name.replace(/^dmod\.v1\./, "").replace(/Service$/, ""));
      })));
  });
  return el;
}

/** Who is calling; a sign-in form when auth is required or another user is wanted. */
export function userArea(): HTMLElement {
  const el = h("div", { class: "user" });
  const render = async () => {
    let who = "";
    try {
      const user = (await auth.getCurrentUser({})).user;
      who = user ? `${user.username}${user.roles.length ? ` (${user.roles.join(", ")})` : ""}` : "";
    } catch (err) {
      if (toProblem(err).code === "UNAUTHENTICATED") setToken(null);
    }
    replace(el,
      who ? h("span", { class: "muted", "data-user": who }, who) : h("span", { class: "muted" }, "not signed in"),
      token()
        ? h("button", { type: "button", onclick: () => { setToken(null); void render(); rerender(); } }, "Sign out")
        : h("button", { type: "button", "aria-expanded": "false", onclick: (event: Event) => {
          const open = el.querySelector("form.login");
          if (open) open.remove();
          else el.append(loginForm(render));
          (event.currentTarget as HTMLElement).setAttribute("aria-expanded", String(!open));
        } }, "Sign in"));
  };
  void render();
  return el;
}

function loginForm(done: () => Promise<void>): HTMLElement {
  const status = h("div");
  const form = h("form", { class: "login", autocomplete: "on" },
    h("input", { name: "username", placeholder: "username", "data-field": "username", autocomplete: "username" }),
    h("input", { name: "password", type: "password", placeholder: "password", "data-field": "password",
      autocomplete: "current-password" }),
    h("button", { type: "submit" }, "Sign in"),
    status);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    clearFields(form);
    replace(status);
    try {
      const reply = await auth.login({ username: String(data.get("username")), password: String(data.get("password")) });
      setToken(reply.accessToken);
      form.remove();
      await done();
      rerender();
    } catch (err) {
      if (isAbort(err)) return;
      markFields(form, err);
      replace(status, errorBox(err, "signing in"));
    }
  });
  return form;
}
