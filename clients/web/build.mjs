// Builds the single-page UI into dist/: one minified ES module, its stylesheet and index.html.
// The new build is swapped in whole, so a running `dmod up` never serves half a build.
import { build } from "esbuild";
import { cpSync, existsSync, mkdirSync, renameSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(fileURLToPath(import.meta.url));
const out = join(root, "dist");
const next = join(root, `dist.${process.pid}.new`);
const old = join(root, `dist.${process.pid}.old`);
rmSync(next, { recursive: true, force: true });
mkdirSync(next, { recursive: true });
try {
  await build({
    entryPoints: [join(root, "src/main.ts")],
    bundle: true,
    format: "esm",
    target: "es2022",
    minify: true,
    sourcemap: "linked",
    legalComments: "none",
    outfile: join(next, "app.js"),
    logLevel: "warning",
  });
  cpSync(join(root, "static"), next, { recursive: true });
  if (existsSync(out)) renameSync(out, old);
  renameSync(next, out);
} finally {
  rmSync(next, { recursive: true, force: true });
  rmSync(old, { recursive: true, force: true });
}
console.log(`built ${out}`);
