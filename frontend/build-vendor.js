// Copies the browser builds of our npm dependencies into static/vendor/ (gitignored), where
// Django's staticfiles serve them. Add a line to VENDOR_FILES for each new library.
"use strict";
const fs = require("fs");
const path = require("path");

// [file inside node_modules, name under static/vendor/]
const VENDOR_FILES = [
  ["chart.js/dist/chart.umd.min.js", "chart.js/chart.umd.min.js"],
  ["chart.js/LICENSE.md", "chart.js/LICENSE.md"],
  ["hls.js/dist/hls.min.js", "hls.min.js"],
  ["hls.js/LICENSE", "hls.js/LICENSE"],
];

const here = __dirname;
const outRoot = path.join(here, "static", "vendor");
for (const [source, target] of VENDOR_FILES) {
  const from = path.join(here, "node_modules", source);
  const to = path.join(outRoot, target);
  fs.mkdirSync(path.dirname(to), { recursive: true });
  fs.copyFileSync(from, to);
  console.log(`vendor: ${source} -> static/vendor/${target}`);
}
