// Builds a component from a module that registers an operator, source or sink: bundles it with
// the SDK and @msgpack/msgpack (esbuild: componentize-js reads one file and resolves no
// packages), then componentizes the bundle against wit/ for the world of the class it
// registered.
//
// Usage: node build.mjs MODULE.js OUT.wasm

import { mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

import { componentize } from "@bytecodealliance/componentize-js";
import * as esbuild from "esbuild";

import { registered } from "./jobhost/register.js";
import { WORLD_EXPORTS } from "./jobhost/roles.js";

const here = dirname(fileURLToPath(import.meta.url));
const [source, out] = process.argv.slice(2);
if (!source || !out) {
  console.error("usage: node build.mjs MODULE.js OUT.wasm");
  process.exit(2);
}

// Importing the module registers its class: its role names the world.
await import(pathToFileURL(resolve(source)).href);
const role = registered()?.role;
if (role === undefined) throw new Error(`${source} registers nothing: add \`register(YourClass)\``);

const entry =
  `import ${JSON.stringify(resolve(source))};\n` +
  `export { ${WORLD_EXPORTS[role].join(", ")} } from ${JSON.stringify(join(here, "jobhost/exports.js"))};\n`;
const bundled = await esbuild.build({
  stdin: { contents: entry, resolveDir: here, sourcefile: "entry.js", loader: "js" },
  bundle: true,
  format: "esm",
  platform: "neutral",
  mainFields: ["module", "main"],
  target: "es2022",
  write: false,
  logLevel: "warning",
});
const work = await mkdtemp(join(tmpdir(), "componentize-"));
const bundle = join(work, "bundle.js");
await writeFile(bundle, bundled.outputFiles[0].contents);
// The host links no `wasi:http`: a component importing it would not instantiate.
const { component } = await componentize({
  sourcePath: bundle,
  witPath: join(here, "wit"),
  worldName: role,
  disableFeatures: ["http", "fetch-event"],
}).finally(() => rm(work, { recursive: true, force: true }));
await writeFile(`${out}.tmp`, component);
await rename(`${out}.tmp`, out);
console.log(`built ${out} (${role}, ${component.length} bytes)`);
