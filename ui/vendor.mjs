// Copy the browser builds of the demo pages' libraries from node_modules into the Python package
// (src/wavegraph/http/static/vendor/), with their licences and a manifest of versions and sha256
// sums, so the app serves them itself: no CDN. Run after `npm ci` (see the Makefile's `ui` target).
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "src", "wavegraph", "http", "static", "vendor");
const files = [
  { pkg: "d3", from: "dist/d3.min.js", to: "d3.min.js" },
  { pkg: "@observablehq/plot", from: "dist/plot.umd.min.js", to: "plot.umd.min.js" },
];

mkdirSync(out, { recursive: true });
const manifest = {};
for (const { pkg, from, to } of files) {
  const root = join(here, "node_modules", pkg);
  const { version, license } = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
  copyFileSync(join(root, from), join(out, to));
  copyFileSync(join(root, "LICENSE"), join(out, `${to}.LICENSE`));
  const sha256 = createHash("sha256").update(readFileSync(join(out, to))).digest("hex");
  manifest[to] = { package: pkg, version, license, sha256 };
}
writeFileSync(join(out, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
console.log(`vendored ${Object.keys(manifest).join(", ")} into ${out}`);
