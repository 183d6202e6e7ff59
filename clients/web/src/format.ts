// Display helpers for protobuf values.
import type { DescEnum } from "@bufbuild/protobuf";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";

/** JOB_STATE_RUNNING -> "RUNNING" (the enum's common prefix removed). */
export function enumLabel(schema: DescEnum, value: number): string {
  const found = schema.values.find((v) => v.number === value);
  if (!found) return String(value);
  return schema.sharedPrefix ? found.name.slice(schema.sharedPrefix.length) : found.name;
}

/** The enum's values without the _UNSPECIFIED zero, as [number, label]. */
export function enumOptions(schema: DescEnum): [number, string][] {
  return schema.values.filter((v) => v.number !== 0).map((v) => [v.number, enumLabel(schema, v.number)]);
}

export function bytes(n: bigint | number): string {
  let value = Number(n);
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (Math.abs(value) >= 1024 && i < units.length - 1) {
    value /= 1024;
    i++;
  }
  return i === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${units[i]}`;
}

export function time(ts: Timestamp | undefined): string {
  if (!ts) return "";
  const d = timestampDate(ts);
  return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

/** "jobs/abc" -> "abc"; "datasets/x/objects/a/b" -> "a/b". */
export function shortId(name: string): string {
  const objects = name.indexOf("/objects/");
  if (objects >= 0) return name.slice(objects + "/objects/".length);
  return name.slice(name.indexOf("/") + 1);
}

export function num(value: number, digits = 3): string {
  if (!Number.isFinite(value)) return String(value);
  const abs = Math.abs(value);
  if (abs !== 0 && (abs < 1e-3 || abs >= 1e6)) return value.toExponential(2);
  return value.toFixed(digits).replace(/\.?0+$/, "");
}

export function percent(step: bigint | number, total: bigint | number): number {
  const t = Number(total);
  return t > 0 ? Math.max(0, Math.min(100, (Number(step) / t) * 100)) : 0;
}
