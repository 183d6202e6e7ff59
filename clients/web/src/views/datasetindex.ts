// Dataset pickers: a <datalist> of known datasets, so forms take display names or datasets/{id}.
import { datasets } from "../api";
import { h } from "../dom";
import type { Dataset } from "../gen/dmod/v1/datasets_pb";
import { DataCategory } from "../gen/dmod/v1/domain_pb";

const PAGE_SIZE = 100;
const MAX_PAGES = 10;

export async function loadDatasets(signal: AbortSignal): Promise<Dataset[]> {
  const all: Dataset[] = [];
  let pageToken = "";
  for (let i = 0; i < MAX_PAGES; i++) {
    const reply = await datasets.listDatasets({ pageSize: PAGE_SIZE, pageToken }, { signal });
    all.push(...reply.datasets);
    pageToken = reply.nextPageToken;
    if (!pageToken) break;
  }
  return all;
}

export function datalist(id: string, list: Dataset[], category: DataCategory): HTMLDataListElement {
  return h("datalist", { id }, list
    .filter((d) => category === DataCategory.UNSPECIFIED || d.category === category)
    .map((d) => h("option", { value: d.displayName || d.name }, d.name)));
}

/** A display name (or datasets/{id}) -> datasets/{id}; unknown text is passed on for the server to judge. */
export function resolveDataset(text: string, list: Dataset[]): string {
  const value = text.trim();
  if (!value || value.startsWith("datasets/")) return value;
  return list.find((d) => d.displayName === value)?.name ?? value;
}
