// Builds each guest of `guest-examples/js/` and `tests/guests/js/` into a WebAssembly
// component, `<out>/<name>_js.wasm`: bundles it with the SDK and @msgpack/msgpack (esbuild:
// componentize-js reads one file and resolves no packages), then componentizes the bundle
// against `wit/` with componentize-js, for the world of the role the example registered
// (`Operator`, `Source` or `Sink`).
//
// A component is rebuilt only when its bundle, the WIT files, the toolchain or its options
// changed: a stamp beside the bundle in `<work>` records what the component was built from.
//
// Usage: node build.mjs --out DIR --work DIR [NAME...]   (default: every guest)

import { createHash } from "node:crypto";
import { mkdir, readFile, readdir, rename, writeFile } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { fileURLToPath, pathToFileURL } from "node:url";

import { componentize, version as componentizeVersion } from "@bytecodealliance/componentize-js";

import { COMPONENTIZE_OPTIONS, bundle } from "./jobhost/build.js";
import { registered, unregister } from "./jobhost/register.js";

const here = dirname(fileURLToPath(import.meta.url));
const witDir = resolve(here, "../../wit");
// Where the guests are: the examples users copy, and the tests' fixtures.
const sourceDirs = [
  resolve(here, "../../guest-examples/js"),
  resolve(here, "../../tests/guests/js"),
];

const { values: args, positionals: names } = parseArgs({
  options: { out: { type: "string" }, work: { type: "string" } },
  allowPositionals: true,
});
if (!args.out || !args.work) {
  console.error("usage: node build.mjs --out DIR --work DIR [NAME...]");
  process.exit(2);
}

async function witDigest() {
  const hash = createHash("sha256");
  for (const name of (await readdir(witDir)).filter((n) => n.endsWith(".wit")).sort()) {
    hash.update(name).update("\0").update(await readFile(join(witDir, name))).update("\0");
  }
  return hash.digest("hex");
}

/** The role of the class the example registers, learnt by importing it here. */
async function roleOf(path) {
  unregister();
  await import(pathToFileURL(path).href);
  const guest = registered();
  unregister();
  if (guest === undefined) throw new Error(`${path} registers nothing: add \`register(YourClass)\``);
  return guest.role;
}

async function build(name, path, wit) {
  const role = await roleOf(path);
  const code = await bundle(path, role);
  const stamp = createHash("sha256")
    .update(JSON.stringify({ componentizeVersion, COMPONENTIZE_OPTIONS, role, wit }))
    .update(code)
    .digest("hex");
  const wasm = join(args.out, `${name}_js.wasm`);
  const bundlePath = join(args.work, `${name}.bundle.js`);
  const stampPath = join(args.work, `${name}.stamp`);
  const built = await readFile(stampPath, "utf8").catch(() => "");
  const present = await readFile(wasm).then(
    (bytes) => createHash("sha256").update(bytes).digest("hex"),
    () => undefined,
  );
  if (present !== undefined && built === `${stamp} ${present}\n`) {
    console.log(`${name}_js.wasm is up to date`);
    return;
  }
  await writeFile(bundlePath, code);
  const started = performance.now();
  const { component } = await componentize({
    sourcePath: bundlePath,
    witPath: witDir,
    worldName: role,
    ...COMPONENTIZE_OPTIONS,
  });
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  // Written beside, then renamed: a component is either the old one or the whole new one.
  await writeFile(`${wasm}.tmp`, component);
  await rename(`${wasm}.tmp`, wasm);
  const digest = createHash("sha256").update(component).digest("hex");
  await writeFile(stampPath, `${stamp} ${digest}\n`);
  const mib = (component.length / 2 ** 20).toFixed(1);
  console.log(`built ${name}_js.wasm (${role}, ${mib} MiB) in ${seconds} s`);
}

await mkdir(args.out, { recursive: true });
await mkdir(args.work, { recursive: true });
const sources = new Map();
for (const dir of sourceDirs) {
  for (const file of (await readdir(dir)).filter((n) => n.endsWith(".js"))) {
    sources.set(basename(file, ".js"), join(dir, file));
  }
}
const all = [...sources.keys()].sort();
for (const name of names) {
  if (!all.includes(name)) throw new Error(`no guest \`${name}\` (there are: ${all.join(", ")})`);
}
const wit = await witDigest();
for (const name of names.length > 0 ? names : all) await build(name, sources.get(name), wit);
