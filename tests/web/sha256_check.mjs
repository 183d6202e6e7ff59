// Compares the UI's incremental SHA-256 (bundled by the test) with node:crypto, across block
// boundaries and split updates. argv[2]: the bundled sha256 module.
import { createHash } from "node:crypto";
import { pathToFileURL } from "node:url";

const { Sha256 } = await import(pathToFileURL(process.argv[2]).href);
const failures = [];
for (const size of [0, 1, 3, 55, 56, 57, 63, 64, 65, 119, 120, 128, 1000, (1 << 20) + 3]) {
  const data = new Uint8Array(size).map((_, i) => (i * 31 + 7) & 0xff);
  const expected = createHash("sha256").update(data).digest("hex");
  const whole = new Sha256().update(data).hex();
  const sha = new Sha256();
  for (let i = 0; i < size; i += 37) sha.update(data.subarray(i, i + 37));
  const split = sha.hex();
  if (whole !== expected || split !== expected) failures.push({ size, expected, whole, split });
}
console.log(JSON.stringify({ failures }));
