// Submit a job: inputs by dataset name, time range, cpus, allocation paradigm, partition method.
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { jobs } from "../api";
import { h, replace, uuid } from "../dom";
import type { Dataset } from "../gen/dmod/v1/datasets_pb";
import { DataCategory } from "../gen/dmod/v1/domain_pb";
import { AllocationParadigmSchema } from "../gen/dmod/v1/jobs_pb";
import { PartitionMethodSchema } from "../gen/dmod/v1/partitioner_pb";
import { clearFields, errorBox, isTransient, markFields } from "../errors";
import { enumOptions, shortId } from "../format";
import { href, navigate } from "../router";
import { datalist, loadDatasets, resolveDataset } from "./datasetindex";

const INPUTS: [string, string, DataCategory, boolean][] = [
  ["hydrofabricDataset", "hydrofabric_dataset", DataCategory.HYDROFABRIC, true],
  ["realizationDataset", "realization_dataset", DataCategory.CONFIG, true],
  ["forcingDataset", "forcing_dataset", DataCategory.FORCING, true],
  ["bmiConfigDataset", "bmi_config_dataset", DataCategory.CONFIG, false],
  ["partitionDataset", "partition_dataset", DataCategory.CONFIG, false],
];

function field(label: string, control: HTMLElement, hint = ""): HTMLElement {
  return h("label", { class: "field" }, h("span", null, label), control, hint && h("small", { class: "muted" }, hint));
}

function select(name: string, dataField: string, options: [number | string, string][], first: string): HTMLSelectElement {
  return h("select", { name, "data-field": dataField },
    h("option", { value: "0" }, first),
    options.map(([value, label]) => h("option", { value: String(value) }, label)));
}

function list(text: string): string[] {
  return text.split(/[\s,]+/).filter(Boolean);
}

/** "2024-01-01T00:00" in the form is UTC. */
function utc(value: string) {
  const date = new Date(`${value}Z`);
  return value && !Number.isNaN(date.getTime()) ? timestampFromDate(date) : undefined;
}

export async function submitView(outlet: HTMLElement, _params: string[], signal: AbortSignal): Promise<void> {
  let known: Dataset[] = [];
  const note = h("div", { class: "muted note" });
  const errors = h("div", { class: "form-errors" });
  let requestId = uuid();

  const form = h("form", { class: "form", novalidate: true },
    h("fieldset", null, h("legend", null, "Inputs"),
      INPUTS.map(([name, proto, , required]) => field(proto.replace(/_dataset$/, "").replace("_", " "),
        h("input", { name, list: `list-${name}`, "data-field": `spec.${proto}`, autocomplete: "off",
          placeholder: "display name or datasets/{id}" }),
        required ? "empty: the best match is searched" : "optional")),
      note),
    h("fieldset", null, h("legend", null, "Time range (UTC)"),
      field("start", h("input", { type: "datetime-local", name: "start", "data-field": "spec.start_time" })),
      field("end", h("input", { type: "datetime-local", name: "end", "data-field": "spec.end_time" }))),
    h("fieldset", null, h("legend", null, "Resources"),
      field("cpus (MPI ranks)", h("input", { type: "number", name: "cpus", min: 1, value: "1", "data-field": "spec.cpu_count" })),
      field("allocation", select("paradigm", "spec.allocation_paradigm", enumOptions(AllocationParadigmSchema), "default")),
      field("partitioning", select("partition", "spec.partition_method", enumOptions(PartitionMethodSchema), "default"),
        "used when cpus > 1 and no partition dataset is given"),
      field("engine", h("select", { name: "engine", "data-field": "spec.engine" },
        ["auto", "ngen", "embedded"].map((e) => h("option", { value: e }, e)))),
      field("priority", h("input", { type: "number", name: "priority", value: "0", "data-field": "spec.priority" })),
      field("catchments", h("input", { name: "catchments", placeholder: "cat-1, cat-2 (empty: all)",
        "data-field": "spec.catchment_ids" }))),
    h("fieldset", null, h("legend", null, "Evaluation after success (optional)"),
      field("observations", h("input", { name: "observations", list: "list-observations", autocomplete: "off",
        placeholder: "display name or datasets/{id}", "data-field": "spec.evaluation.observation_dataset" })),
      field("metrics", h("input", { name: "metrics", placeholder: "nse, kge (empty: all)",
        "data-field": "spec.evaluation.metrics" }))),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Submit job")),
    errors);

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const text = (key: string) => String(data.get(key) ?? "").trim();
    const button = form.querySelector<HTMLButtonElement>("button[type=submit]")!;
    clearFields(form);
    replace(errors);
    button.disabled = true;
    try {
      const reply = await jobs.createJob({
        requestId,
        spec: {
          ...Object.fromEntries(INPUTS.map(([name]) => [name, resolveDataset(text(name), known)])),
          startTime: utc(text("start")),
          endTime: utc(text("end")),
          cpuCount: Number(text("cpus") || 0),
          allocationParadigm: Number(text("paradigm")),
          partitionMethod: Number(text("partition")),
          engine: text("engine") === "auto" ? "" : text("engine"),
          priority: Number(text("priority") || 0),
          catchmentIds: list(text("catchments")),
          evaluation: text("observations") ? {
            observationDataset: resolveDataset(text("observations"), known),
            metrics: list(text("metrics")),
          } : undefined,
        },
      }, { signal });
      navigate(href("jobs", shortId(reply.job?.name ?? "")));
    } catch (err) {
      // After an ambiguous failure, resubmitting with the same id cannot create a second job.
      if (!isTransient(err)) requestId = uuid();
      markFields(form, err);
      replace(errors, errorBox(err, "submitting the job"));
    } finally {
      button.disabled = false;
    }
  });

  outlet.replaceChildren(h("div", { class: "toolbar" }, h("h1", null, "New job")), form);
  try {
    known = await loadDatasets(signal);
    form.append(...INPUTS.map(([name, , category]) => datalist(`list-${name}`, known, category)),
      datalist("list-observations", known, DataCategory.OBSERVATION));
    replace(note, `${known.length} datasets known; type a display name or datasets/{id}.`);
  } catch (err) {
    replace(note, "Dataset names cannot be looked up right now; enter datasets/{id}. ",
      errorBox(err, "listing datasets"));
  }
}
