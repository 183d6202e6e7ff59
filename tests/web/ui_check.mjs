// Drives the DMOD web UI in headless Debian Chromium (playwright-core, no browser download) and
// prints one JSON report on stdout; tests/web/test_web_ui.py asserts on it.
// env: DMOD_UI_URL, DMOD_WEB_DIR (clients/web, where playwright-core is installed), CHROMIUM.
import { createRequire } from "node:module";
import { join } from "node:path";

const require = createRequire(join(process.env.DMOD_WEB_DIR, "package.json"));
const { chromium } = require("playwright-core");

const base = process.env.DMOD_UI_URL;
const report = { steps: [], pageErrors: [], consoleErrors: [] };
const step = (name, data = {}) => report.steps.push({ name, ...data });

/** Waits for the first selector that appears; returns its index. */
async function first(page, selectors, timeout = 20_000) {
  const found = await Promise.race(selectors.map((s, i) =>
    page.locator(s).first().waitFor({ timeout }).then(() => i, () => -1)));
  if (found < 0) throw new Error(`none of ${selectors.join(" | ")} appeared`);
  return found;
}

async function errorInfo(page, scope = "main") {
  const box = page.locator(`${scope} .error`).first();
  return {
    code: await box.getAttribute("data-code"),
    reason: await box.getAttribute("data-reason"),
    text: (await box.innerText()).slice(0, 500),
    fields: await box.locator("li[data-field]").evaluateAll((els) => els.map((e) => e.dataset.field)),
  };
}

async function datasets(page) {
  await page.goto(`${base}/#/datasets`);
  if (await first(page, ["main table", "main .empty", "main .error"]) === 2) {
    return step("datasets", { listed: false, error: await errorInfo(page) });
  }
  step("datasets", { listed: true, rows: await page.locator("main tbody tr").count() });
  const form = page.locator("form[data-form=create-dataset]");
  const displayName = `ui-test-${Date.now()}`;
  await form.locator("input[name=display_name]").fill(displayName);
  await form.locator("select[name=category]").selectOption({ label: "config" });
  await form.locator("select[name=format]").selectOption({ label: "generic" });
  await form.locator("button[type=submit]").click();
  if (await first(page, ["main h1:has-text('" + displayName + "')", "form[data-form=create-dataset] .form-errors .error"]) === 1) {
    return step("create-dataset", { created: false,
      error: await errorInfo(page, "form[data-form=create-dataset] .form-errors") });
  }
  const id = decodeURIComponent(new URL(page.url()).hash.split("/").pop());
  step("create-dataset", { created: true, id, displayName });

  const content = `hello from the browser ${Date.now()}\n`.repeat(100);
  await page.locator("input[type=file]").setInputFiles(
    { name: "notes.txt", mimeType: "text/plain", buffer: Buffer.from(content) });
  await page.locator("button[name=upload]").click();
  const item = page.locator("li[data-upload='notes.txt'][data-done]");
  await item.waitFor({ timeout: 30_000 });
  const uploaded = (await item.getAttribute("data-done")) === "true";
  step("upload", { uploaded, text: (await item.innerText()).slice(0, 500) });
  if (!uploaded) return;

  const download = page.locator("button[data-object='notes.txt']");
  await download.waitFor({ timeout: 15_000 });
  const popup = page.context().waitForEvent("page", { timeout: 10_000 }).catch(() => null);
  await download.click();
  const link = page.locator("a.download-link").first();
  await link.waitFor({ timeout: 15_000 });
  await (await popup)?.close();
  const body = await (await fetch(await link.getAttribute("href"))).text();
  step("download", { matches: body === content, bytes: body.length });
}

async function jobs(page) {
  await page.goto(`${base}/#/jobs`);
  if (await first(page, ["main table", "main .empty", "main .error"]) === 2) {
    return step("jobs", { listed: false, error: await errorInfo(page) });
  }
  step("jobs", { listed: true, rows: await page.locator("main tbody tr").count() });
  await page.goto(`${base}/#/jobs/new`);
  await page.locator("input[name=start]").fill("2024-01-01T00:00");
  await page.locator("input[name=end]").fill("2024-01-02T00:00");
  await page.locator("input[name=hydrofabricDataset]").fill("datasets/does-not-exist");
  await page.locator("main form button[type=submit]").click();
  if (await first(page, ["main .job-state", "main .form-errors .error"], 30_000) === 1) {
    return step("submit-job", { created: false, error: await errorInfo(page, "main .form-errors"),
      marked: await page.locator("main form .invalid").count() });
  }
  const id = decodeURIComponent(new URL(page.url()).hash.split("/").pop());
  const states = new Set();
  const deadline = Date.now() + 20_000;
  let state = "";
  while (Date.now() < deadline) {
    state = await page.locator("main .job-state").getAttribute("data-state");
    states.add(state);
    if (["SUCCEEDED", "FAILED", "CANCELLED"].includes(state)) break;
    await page.waitForTimeout(250);
  }
  const cancel = page.locator("main button:has-text('Cancel')");
  if (!["SUCCEEDED", "FAILED", "CANCELLED"].includes(state) && await cancel.isEnabled()) {
    await cancel.click();
    await page.locator("main .job-state[data-state=CANCELLED]").waitFor({ timeout: 30_000 }).catch(() => {});
    state = await page.locator("main .job-state").getAttribute("data-state");
    states.add(state);
  }
  const timeline = page.locator("table.timeline tbody tr");
  const events = await timeline.count();
  step("watch-job", { created: true, id, states: [...states], final: state, events });

  // Retry: the new attempt's events must arrive on the open page, through the live stream.
  const retry = page.locator("main button:has-text('Retry')");
  if (!["FAILED", "CANCELLED"].includes(state) || !await retry.isEnabled()) return;
  await retry.click();
  const outcome = await first(page, [`table.timeline tbody tr:nth-child(${events + 1})`, "main .error"], 30_000);
  if (outcome === 1) return step("retry-job", { retried: false, error: await errorInfo(page) });
  await page.waitForFunction((n) => {
    const s = document.querySelector("main .job-state")?.getAttribute("data-state");
    return document.querySelectorAll("table.timeline tbody tr").length > n &&
      ["SUCCEEDED", "FAILED", "CANCELLED"].includes(s);
  }, events + 1, { timeout: 30_000 }).catch(() => {});
  step("retry-job", { retried: true, events: await timeline.count(),
    final: await page.locator("main .job-state").getAttribute("data-state"),
    attempt: await page.locator("dl.kv dt:text-is('attempt') + dd").innerText() });
}

async function listPage(page, hash, name) {
  await page.goto(`${base}/${hash}`);
  const i = await first(page, ["main table", "main .empty", "main .error"]);
  step(name, i === 2 ? { listed: false, error: await errorInfo(page) } : { listed: true });
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic"], // playwright gives it a fresh temp profile
});
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(20_000);
  page.on("pageerror", (err) => report.pageErrors.push(String(err)));
  page.on("console", (msg) => { if (msg.type() === "error") report.consoleErrors.push(msg.text()); });

  await page.goto(`${base}/`);
  await page.locator("header .health[data-health=serving]").waitFor({ timeout: 30_000 });
  step("health", { services: await page.locator("header .svc.ok").count(),
    user: await page.locator("header [data-user]").getAttribute("data-user", { timeout: 10_000 }) });

  await page.locator("header button:has-text('Sign in')").click();
  await page.locator("form.login button[type=submit]").click();
  await page.locator("form.login .error").waitFor();
  step("login-invalid", { ...(await errorInfo(page, "form.login")),
    marked: await page.locator("form.login .invalid").count() });
  await page.locator("form.login input[name=username]").fill("nobody");
  await page.locator("form.login input[name=password]").fill("wrong-password");
  await page.locator("form.login button[type=submit]").click();
  await page.locator("form.login .error[data-code=UNAUTHENTICATED]").waitFor();
  step("login-wrong", await errorInfo(page, "form.login"));

  for (const [name, run] of [["datasets", datasets], ["jobs", jobs]]) {
    try {
      await run(page);
    } catch (err) {
      step(`${name}-crashed`, { error: String(err).slice(0, 800) });
    }
  }
  await listPage(page, "#/evaluations", "evaluations");
  await listPage(page, "#/nodes", "nodes");
} finally {
  await browser.close();
}
console.log(JSON.stringify(report));
