// Browser upload through a presigned URL: hash (SHA-256) -> CreateUploadUrl -> PUT -> FinalizeUpload.
// grpc-web has no client streaming, so the bytes go straight to the object store.
import { datasets } from "./api";
import type { DataObject } from "./gen/dmod/v1/datasets_pb";
import { sha256Hex } from "./sha256";

export type Stage = (text: string) => void;

export async function uploadFile(parent: string, path: string, file: File, stage: Stage,
  signal: AbortSignal): Promise<DataObject> {
  stage("hashing…");
  const sha256 = await sha256Hex(file, (done) => stage(`hashing ${(done * 100).toFixed(0)}%`));
  signal.throwIfAborted();
  const contentType = file.type || "application/octet-stream";
  stage("requesting upload URL…");
  const { url, uploadId } = await datasets.createUploadUrl(
    { parent, path, sizeBytes: BigInt(file.size), sha256, contentType }, { signal });
  stage("uploading…");
  const response = await fetch(url, { method: "PUT", body: file, headers: { "content-type": contentType }, signal });
  if (!response.ok) {
    const body = (await response.text()).slice(0, 300);
    throw new Error(`the object store refused the upload: HTTP ${response.status} ${body}`);
  }
  stage("verifying…");
  const { object } = await datasets.finalizeUpload({ uploadId }, { signal });
  if (!object) throw new Error("FinalizeUpload returned no object");
  stage("done");
  return object;
}

/** Opens a presigned download URL; the browser saves or shows the object. */
export async function downloadUrl(name: string, signal?: AbortSignal): Promise<string> {
  return (await datasets.createDownloadUrl({ name }, { signal })).url;
}
