// The window-count examples as built components of world `timed-operator`, in each language,
// run before the host keeps timers: each is transpiled by jco (the component model in
// JavaScript) and driven through `init`, `process`, `on-timer`, `snapshot`, `restore` and
// `catch-up`, its `timers` import a `ManualTimers`. The three languages' v1 write the same
// bytes, and each v2 resumes another language's v1 open windows (the timers v1 registered
// fire in v2, as the host keeps them across an upgrade).
//
// Needs the components: `just guests` (or `./dev rust-guests py-guests js-guests`); skipped,
// saying so, without them.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdtemp, mkdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import v8 from "node:v8";

// jco comes with componentize-js (its dependency, pinned by package-lock.json).
import { transpile } from "@bytecodealliance/jco";

import { ManualTimers, TimeDomain } from "../jobhost/index.js";

const here = dirname(fileURLToPath(import.meta.url));
const target = process.env.JOBHOST_TARGET_DIR ?? resolve(here, "../../../target");
const guests = join(target, "wasm32-wasip2/guest");
const LANGUAGES = { rust: "", python: "_py", js: "_js" };
const wasm = (version, language) => join(guests, `window_count_v${version}${LANGUAGES[language]}.wasm`);
const missing = Object.keys(LANGUAGES)
  .flatMap((language) => [wasm(1, language), wasm(2, language)])
  .filter((path) => !existsSync(path));
const skip = missing.length > 0 && `not built (run \`just guests\`): ${missing.join(", ")}`;

// componentize-py's CPython uses extended constant expressions, which Node 20 compiles only
// behind a flag (later Nodes by default).
const extendedConst = [0, 97, 115, 109, 1, 0, 0, 0, 6, 9, 1, 0x7f, 0, 0x41, 1, 0x41, 2, 0x6a, 0x0b];
if (!WebAssembly.validate(new Uint8Array(extendedConst))) {
  v8.setFlagsFromString("--experimental-wasm-extended-const");
}

const work = await mkdtemp(join(tmpdir(), "jobhost-components-"));
after(() => rm(work, { recursive: true, force: true }));

/** The `timers` import of every instance: whatever `globalThis.jobhostTimers` is. */
const TIMERS = `
const timers = () => globalThis.jobhostTimers;
export const register = (key, timestamp, domain) => timers().register(key, timestamp, domain);
const remove = (key, timestamp, domain) => timers().delete(key, timestamp, domain);
export { remove as delete };
export const currentWatermark = () => timers().watermark();
`;

let instances = 0;

/** A fresh instance of `path`, transpiled once. */
async function instantiate(path) {
  const name = path.split("/").pop().replace(/\.wasm$/, "");
  const dir = join(work, name);
  if (!existsSync(dir)) {
    if (!existsSync(join(work, "node_modules"))) {
      await symlink(resolve(here, "../node_modules"), join(work, "node_modules"));
      await writeFile(join(work, "package.json"), '{ "type": "module" }');
      await writeFile(join(work, "timers.js"), TIMERS);
      await writeFile(join(work, "types.js"), "export {};\n");
    }
    const { files } = await transpile(await readFile(path), {
      name,
      quiet: true,
      noTypescript: true,
      map: {
        "jobhost:operator/timers@0.3.2": "../timers.js",
        "jobhost:operator/types@0.3.2": "../types.js",
      },
    });
    await mkdir(dir);
    for (const [file, bytes] of Object.entries(files)) {
      await mkdir(dirname(join(dir, file)), { recursive: true });
      await writeFile(join(dir, file), bytes);
    }
  }
  instances += 1;
  return import(`${pathToFileURL(join(dir, `${name}.js`)).href}?instance=${instances}`);
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const GROUPS = { a: 7, b: 9 };
const CONTEXT = {
  operatorId: "windows",
  subtask: 0,
  parallelism: 1,
  maxParallelism: 128,
  keyGroupStart: 0,
  keyGroupEnd: 128,
  config: [],
};
const ORIGIN = { moduleName: "window-count", moduleVersion: "1.0.0", moduleSha256: "" };

/** A batch of `[key, value, timestamp]` rows, each key in its group of `GROUPS`. */
function batch(rows) {
  let keyEnd = 0;
  let valueEnd = 0;
  return {
    keys: encoder.encode(rows.map(([key]) => key).join("")),
    keyEnds: Uint32Array.from(rows.map(([key]) => (keyEnd += key.length))),
    values: encoder.encode(rows.map(([, value]) => value).join("")),
    valueEnds: Uint32Array.from(rows.map(([, value]) => (valueEnd += value.length))),
    timestamps: BigInt64Array.from(rows.map(([, , t]) => BigInt(t))),
    keyGroups: Uint32Array.from(rows.map(([key]) => GROUPS[key])),
  };
}

function values(output) {
  const out = [];
  let start = 0;
  for (const end of output.valueEnds) {
    out.push(decoder.decode(output.values.subarray(start, end)));
    start = end;
  }
  return out;
}

const hex = (bytes) => Buffer.from(bytes).toString("hex");

/** v1 of `language` after `a` at 1000 and 2000 and `b` at 12000: its full snapshot's groups. */
async function v1Snapshot(language, timers) {
  globalThis.jobhostTimers = timers;
  const v1 = await instantiate(wasm(1, language));
  v1.init(CONTEXT);
  assert.deepEqual(values(v1.process(batch([["a", "", 1_000], ["a", "", 2_000], ["b", "", 12_000]]))), []);
  return v1.snapshot(1n, true).keyGroups;
}

test("each language's window-count v1 writes the same bytes", { skip }, async () => {
  const snapshots = {};
  for (const language of Object.keys(LANGUAGES)) {
    const timers = new ManualTimers((key) => GROUPS[decoder.decode(key)]);
    const groups = await v1Snapshot(language, timers);
    snapshots[language] = groups.map((g) => [g.keyGroup, g.delta, hex(g.state)]);
    const pending = timers.pending(TimeDomain.EVENT_TIME);
    assert.deepEqual(pending.map(([key, t]) => `${decoder.decode(key)}@${t}`), ["a@9999", "b@19999"], language);
  }
  // ["window-count", 1, [[bin "a", [[0, 10000, 2, false]]]]], the SDKs' tests' vector.
  const a = "93ac" + hex(encoder.encode("window-count")) + "01" + "9192c40161" + "919400cd271002c2";
  assert.equal(snapshots.rust[0][2], a);
  assert.deepEqual(snapshots.python, snapshots.rust);
  assert.deepEqual(snapshots.js, snapshots.rust);
});

for (const [from, to] of [["rust", "python"], ["python", "js"], ["js", "rust"]]) {
  test(`a ${to} window-count v2 resumes a ${from} v1's open windows`, { skip }, async () => {
    // One timer service for both: the host keeps v1's timers across the upgrade.
    const timers = new ManualTimers((key) => GROUPS[decoder.decode(key)]);
    const groups = await v1Snapshot(from, timers);
    const v2 = await instantiate(wasm(2, to));
    v2.init(CONTEXT);
    v2.restore({ parallelism: 1, operatorStates: [new Uint8Array(0)], keyGroups: groups }, ORIGIN);
    v2.catchUp.restoreChanges({ parallelism: 1, operatorStates: [new Uint8Array(0)], keyGroups: [] }, ORIGIN);
    assert.deepEqual(values(v2.process(batch([["a", "5", 3_000], ["a", "7", 25_000]]))), []);
    const fired = v2.onTimer("event-time", timers.advanceWatermark(30_000));
    assert.deepEqual(values(fired), [
      "a 0 10000 count=3 sum=unknown",
      "b 10000 20000 count=1 sum=unknown",
      "a 20000 30000 count=1 sum=7",
    ]);
    // Every window fired and went: both groups are emptied.
    const emptied = v2.snapshot(2n, false).keyGroups.map((g) => [g.keyGroup, g.state.length]);
    assert.deepEqual(emptied.sort(([x], [y]) => x - y), [[7, 0], [9, 0]]);
  });
}

/** v1 of `language` after `a` at -5000, -1 and 0: what `process` returned or threw. */
async function v1Negative(language, timers) {
  globalThis.jobhostTimers = timers;
  const v1 = await instantiate(wasm(1, language));
  v1.init(CONTEXT);
  return [v1, () => v1.process(batch([["a", "", -5_000], ["a", "", -1], ["a", "", 0]]))];
}

for (const language of ["rust", "python"]) {
  test(`a ${language} window-count v1 counts records of negative timestamps`, { skip }, async () => {
    // Event time before 1970 (or a generator's first records, less their disorder): the
    // records' timestamps, the timers and the watermark are s64.
    const timers = new ManualTimers((key) => GROUPS[decoder.decode(key)]);
    const [v1, process] = await v1Negative(language, timers);
    assert.deepEqual(values(process()), []);
    const pending = timers.pending(TimeDomain.EVENT_TIME).map(([key, t]) => `${decoder.decode(key)}@${t}`);
    assert.deepEqual(pending, ["a@-1", "a@9999"]);
    const fired = v1.onTimer("event-time", timers.advanceWatermark(-1));
    assert.deepEqual(values(fired), ["a -10000 0 count=2"]);
    assert.deepEqual(Array.from(fired.timestamps), [-1n]);
  });
}

test("a js window-count v1 refuses a timer at a negative time, with an error rather than a trap", { skip }, async () => {
  // componentize-js aborts the component on a negative s64 import argument
  // (bytecodealliance/ComponentizeJS#343): the SDK refuses it first, naming it.
  const timers = new ManualTimers((key) => GROUPS[decoder.decode(key)]);
  const [v1, process] = await v1Negative("js", timers);
  assert.throws(process, (e) => String(e.payload ?? e).includes("cannot set a timer at a negative time (-1)"));
  assert.deepEqual(timers.pending(TimeDomain.EVENT_TIME), []);
  // The instance is still alive, and the failed batch left nothing behind (the host fails the
  // job and restores it): a later batch of non-negative times is counted alone.
  assert.deepEqual(values(v1.process(batch([["a", "", 5]]))), []);
  assert.deepEqual(values(v1.onTimer("event-time", timers.advanceWatermark(9_999))), ["a 0 10000 count=1"]);
});
