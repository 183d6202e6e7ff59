// A dataset's domain in a few lines: time ranges and value sets per standard index.
import { h } from "../dom";
import { StandardIndexSchema, type Domain } from "../gen/dmod/v1/domain_pb";
import { enumLabel, time } from "../format";
import { table } from "../widgets";

const SHOWN_VALUES = 8;

export function domainSummary(domain: Domain | undefined): HTMLElement {
  if (!domain || (domain.continuous.length === 0 && domain.discrete.length === 0)) {
    return h("p", { class: "muted" }, "No domain yet (detected when the dataset is sealed).");
  }
  const rows = [
    ...domain.continuous.map((c) => [
      h("span", null, enumLabel(StandardIndexSchema, c.index).toLowerCase()),
      h("span", null, `${time(c.beginTime)} → ${time(c.endTime)}`)]),
    ...domain.discrete.map((d) => [
      h("span", null, enumLabel(StandardIndexSchema, d.index).toLowerCase()),
      d.values.length === 0 ? h("span", { class: "muted" }, "all values")
        : h("span", { title: d.values.join(", ") },
          `${d.values.length} value${d.values.length === 1 ? "" : "s"}: `,
          h("code", null, d.values.slice(0, SHOWN_VALUES).join(", ")),
          d.values.length > SHOWN_VALUES ? " …" : "")]),
  ];
  return table(["index", "restriction"], rows);
}
