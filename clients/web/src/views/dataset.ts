// One dataset: summary, domain, objects (download via presigned URLs), browser upload, seal, delete.
import { datasets } from "../api";
import { h, replace } from "../dom";
import { DataCategorySchema, DataFormatSchema } from "../gen/dmod/v1/domain_pb";
import { DatasetState, DatasetStateSchema, type Dataset, type DataObject } from "../gen/dmod/v1/datasets_pb";
import { errorBox, isAbort } from "../errors";
import { bytes, enumLabel, shortId, time } from "../format";
import { href, navigate } from "../router";
import { downloadUrl, uploadFile } from "../upload";
import { actionButton, badge, kv, link, Pager, table } from "../widgets";
import { domainSummary } from "./domain";

const PAGE_SIZE = 50;

function summary(d: Dataset): HTMLElement {
  return kv([
    ["name", h("code", null, d.name)],
    ["category", enumLabel(DataCategorySchema, d.category).toLowerCase()],
    ["format", enumLabel(DataFormatSchema, d.dataFormat).toLowerCase()],
    ["state", badge(enumLabel(DatasetStateSchema, d.state), d.state === DatasetState.SEALED ? "ok" : "busy")],
    ["owner", d.owner],
    ["objects", String(d.objectCount)],
    ["size", bytes(d.sizeBytes)],
    ["description", d.description],
    ["labels", Object.entries(d.labels).map(([k, v]) => `${k}=${v}`).join(", ")],
    ["derived from", d.derivedFrom.length > 0 && h("span", null,
      d.derivedFrom.map((name) => [link(href("datasets", shortId(name)), h("code", null, shortId(name))), " "]))],
    ["created", time(d.createTime)],
    ["updated", time(d.updateTime)],
    ["sealed", time(d.sealTime)],
  ]);
}

/** A "download" button: fetches a presigned URL, opens it, and leaves the link beside the button. */
export function downloadButton(object: DataObject): HTMLElement {
  const slot = h("span", { class: "download" });
  const button = actionButton("download", "creating a download URL", async () => {
    const url = await downloadUrl(object.name);
    const a = h("a", { href: url, download: object.path.split("/").pop(), target: "_blank", rel: "noopener",
      class: "download-link" }, "open");
    replace(slot, a);
    a.click();
  }, slot, { class: "small", "data-object": object.path });
  return h("span", null, button, " ", slot);
}

function objectRow(o: DataObject): HTMLElement[] {
  return [h("code", null, o.path), h("span", null, bytes(o.sizeBytes)),
    h("code", { class: "muted", title: o.sha256 }, o.sha256.slice(0, 12)),
    h("span", { class: "muted" }, o.contentType), h("span", { class: "muted" }, time(o.createTime)),
    downloadButton(o)];
}

function uploadPanel(parent: string, signal: AbortSignal, uploaded: () => void): HTMLElement {
  const files = h("input", { type: "file", multiple: true, name: "files" });
  const prefix = h("input", { name: "prefix", placeholder: "folder in the dataset (optional)" });
  const rows = h("ul", { class: "uploads plain" });
  const start = async () => {
    const chosen = Array.from(files.files ?? []);
    const folder = prefix.value.trim().replace(/^\/+|\/+$/g, "");
    for (const file of chosen) {
      const path = folder ? `${folder}/${file.name}` : file.name;
      const stage = h("span", { class: "muted" });
      const item = h("li", { "data-upload": path }, h("code", null, path), ` ${bytes(file.size)} `, stage);
      rows.append(item);
      try {
        const object = await uploadFile(parent, path, file, (text) => replace(stage, text), signal);
        item.dataset.done = "true";
        replace(stage, badge("uploaded", "ok"), " ", h("code", { class: "muted" }, object.sha256.slice(0, 12)));
      } catch (err) {
        if (isAbort(err)) return;
        item.dataset.done = "false";
        replace(stage, errorBox(err, `uploading ${path}`));
      }
    }
    files.value = "";
    uploaded();
  };
  return h("div", { class: "form inline" }, files, prefix,
    actionButton("Upload", "uploading", start, undefined, { class: "primary", name: "upload" }), rows);
}

export async function datasetView(outlet: HTMLElement, [id]: string[], signal: AbortSignal): Promise<void> {
  const name = `datasets/${id}`;
  const errors = h("div");
  const info = h("div");
  const domain = h("div");
  const head = h("div", { class: "toolbar" });
  const upload = h("div");
  const objects = new Pager("listing objects", async (pageToken) => {
    const reply = await datasets.listObjects({ parent: name, pageSize: PAGE_SIZE, pageToken }, { signal });
    return {
      content: table(["path", "size", "sha256", "type", "created", ""], reply.objects.map(objectRow), "No objects yet."),
      next: reply.nextPageToken,
    };
  });

  const load = async () => {
    const dataset = (await datasets.getDataset({ name }, { signal })).dataset;
    if (!dataset) return;
    const open = dataset.state !== DatasetState.SEALED;
    replace(head,
      h("h1", null, dataset.displayName || id),
      open && actionButton("Seal", "sealing the dataset", async () => {
        await datasets.sealDataset({ name });
        await load();
      }, errors),
      actionButton("Detect domain", "detecting the domain", async () => {
        const reply = await datasets.detectDomain({ name });
        replace(domain, h("p", { class: "muted" }, "Detected (not saved):"), domainSummary(reply.domain));
      }, errors),
      actionButton("Delete", "deleting the dataset", async () => {
        if (!confirm(`Delete ${dataset.displayName || name}${open ? "" : " (sealed)"}?`)) return;
        await datasets.deleteDataset({ name, force: !open });
        navigate("#/datasets");
      }, errors, { class: "danger" }));
    replace(info, summary(dataset));
    replace(domain, domainSummary(dataset.domain));
    // Kept across reloads so finished uploads stay listed.
    if (open && !upload.dataset.open) {
      upload.dataset.open = "true";
      replace(upload, uploadPanel(name, signal, () => { void objects.reload(); void load(); }));
    } else if (!open) {
      delete upload.dataset.open;
      replace(upload, h("p", { class: "muted" }, "Sealed: the dataset is immutable."));
    }
  };

  outlet.replaceChildren(head, errors, h("div", { class: "columns" },
    h("section", null, h("h2", null, "Details"), info),
    h("section", null, h("h2", null, "Domain"), domain)),
  h("section", null, h("h2", null, "Objects"), upload, objects.element));
  try {
    await load();
  } catch (err) {
    if (isAbort(err)) return;
    replace(head, h("h1", null, id));
    replace(errors, errorBox(err, "reading the dataset"));
  }
  await objects.reload();
}
