// Copy the browser builds the pages use from node_modules into static files (gitignored).
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const target = join(root, "static", "vendor");
mkdirSync(target, { recursive: true });
for (const [from, to] of [["hls.js/dist/hls.min.js", "hls.min.js"]]) {
  copyFileSync(join(root, "node_modules", from), join(target, to));
}
