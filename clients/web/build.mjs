// Builds the single-page UI into dist/: one minified ES module, its stylesheet and index.html.
import { build } from "esbuild";
import { cpSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(fileURLToPath(import.meta.url));
const out = join(root, "dist");
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
await build({
  entryPoints: [join(root, "src/main.ts")],
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: true,
  sourcemap: "linked",
  legalComments: "none",
  outfile: join(out, "app.js"),
  logLevel: "warning",
});
cpSync(join(root, "static"), out, { recursive: true });
console.log(`built ${out}`);
