// Datasets list (category filter, paging) and the create form.
import { datasets } from "../api";
import { h, replace, uuid } from "../dom";
import { DataCategorySchema, DataFormatSchema, type DataCategory } from "../gen/dmod/v1/domain_pb";
import { DatasetState, DatasetStateSchema, type Dataset } from "../gen/dmod/v1/datasets_pb";
import { clearFields, errorBox, isTransient, markFields } from "../errors";
import { bytes, enumLabel, enumOptions, shortId, time } from "../format";
import { href, navigate } from "../router";
import { badge, link, Pager, table } from "../widgets";

const PAGE_SIZE = 25;
let category = 0;

function row(d: Dataset): HTMLElement[] {
  const id = shortId(d.name);
  return [
    link(href("datasets", id), d.displayName || id),
    h("span", null, enumLabel(DataCategorySchema, d.category).toLowerCase()),
    h("span", null, enumLabel(DataFormatSchema, d.dataFormat).toLowerCase()),
    badge(enumLabel(DatasetStateSchema, d.state), d.state === DatasetState.SEALED ? "ok" : "busy"),
    h("span", null, String(d.objectCount)),
    h("span", null, bytes(d.sizeBytes)),
    h("span", null, d.owner),
    h("span", { class: "muted" }, time(d.createTime)),
  ];
}

function options(schema: typeof DataCategorySchema | typeof DataFormatSchema, name: string, first: string) {
  return h("select", { name, "data-field": `dataset.${name === "format" ? "data_format" : name}` },
    h("option", { value: "0" }, first),
    enumOptions(schema).map(([n, label]) => h("option", { value: String(n) }, label.toLowerCase())));
}

function createForm(): HTMLElement {
  const errors = h("div", { class: "form-errors" });
  let requestId = uuid();
  const form = h("form", { class: "form inline", novalidate: true, "data-form": "create-dataset" },
    h("input", { name: "display_name", placeholder: "display name", "data-field": "dataset.display_name" }),
    options(DataCategorySchema, "category", "category…"),
    options(DataFormatSchema, "format", "format…"),
    h("input", { name: "description", placeholder: "description (optional)", "data-field": "dataset.description" }),
    h("button", { type: "submit", class: "primary" }, "Create dataset"),
    errors);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    clearFields(form);
    replace(errors);
    try {
      const reply = await datasets.createDataset({
        requestId,
        dataset: {
          displayName: String(data.get("display_name")).trim(),
          category: Number(data.get("category")) as DataCategory,
          dataFormat: Number(data.get("format")),
          description: String(data.get("description")).trim(),
        },
      });
      navigate(href("datasets", shortId(reply.dataset?.name ?? "")));
    } catch (err) {
      if (!isTransient(err)) requestId = uuid();
      markFields(form, err);
      replace(errors, errorBox(err, "creating the dataset"));
    }
  });
  return form;
}

export async function datasetsView(outlet: HTMLElement, _params: string[], signal: AbortSignal): Promise<void> {
  const pager = new Pager("listing datasets", async (pageToken) => {
    const reply = await datasets.listDatasets({ pageSize: PAGE_SIZE, pageToken, category }, { signal });
    return {
      content: table(["dataset", "category", "format", "state", "objects", "size", "owner", "created"],
        reply.datasets.map(row), "No datasets yet."),
      next: reply.nextPageToken,
    };
  });
  const filter = options(DataCategorySchema, "category", "all categories");
  filter.addEventListener("change", () => { category = Number(filter.value); void pager.reset(); });
  filter.value = String(category);
  outlet.replaceChildren(
    h("div", { class: "toolbar" }, h("h1", null, "Datasets"), h("label", null, "Category ", filter)),
    createForm(),
    pager.element);
  await pager.reload();
}

