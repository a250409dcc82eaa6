// Builds a component from a module that registers an operator, source or sink: bundles it with
// the SDK and @msgpack/msgpack (`jobhost/build.js`: componentize-js reads one file and resolves
// no packages), then componentizes the bundle against wit/ for the world of the class it
// registered.
//
// Usage: node build.mjs MODULE.js OUT.wasm

import { mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

import { componentize } from "@bytecodealliance/componentize-js";

import { COMPONENTIZE_OPTIONS, bundle } from "./jobhost/build.js";
import { registered } from "./jobhost/register.js";

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

const work = await mkdtemp(join(tmpdir(), "componentize-"));
const bundlePath = join(work, "bundle.js");
await writeFile(bundlePath, await bundle(resolve(source), role));
const { component } = await componentize({
  sourcePath: bundlePath,
  witPath: join(here, "wit"),
  worldName: role,
  ...COMPONENTIZE_OPTIONS,
}).finally(() => rm(work, { recursive: true, force: true }));
await writeFile(`${out}.tmp`, component);
await rename(`${out}.tmp`, out);
console.log(`built ${out} (${role}, ${component.length} bytes)`);
