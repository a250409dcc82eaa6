// The build's half of the SDK, for build scripts running on Node.js (never bundled into a
// component): bundles a module that registers an operator, source or sink with everything it
// imports into one ES module that exports its world's functions, as componentize-js needs it.

import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import * as esbuild from "esbuild";

import { WORLD_EXPORTS } from "./roles.js";

const here = dirname(fileURLToPath(import.meta.url));

/**
 * The componentize-js options of every component. The host links no `wasi:http`: a component
 * importing it would not instantiate. Standard output and errors (console.*), clocks and random
 * stay (the host provides them, clocks frozen unless granted).
 */
export const COMPONENTIZE_OPTIONS = { disableFeatures: ["http", "fetch-event"] };

/** The module at absolute `path` (of world `role`) bundled with what it imports: bytes. */
export async function bundle(path, role) {
  // A timed operator links the host's timers before its module runs.
  const timers = role === "timed-operator" ? `import ${JSON.stringify(join(here, "host-timers.js"))};\n` : "";
  const entry =
    timers +
    `import ${JSON.stringify(path)};\n` +
    `export { ${WORLD_EXPORTS[role].join(", ")} } from ${JSON.stringify(join(here, "exports.js"))};\n`;
  const result = await esbuild.build({
    stdin: { contents: entry, resolveDir: join(here, ".."), sourcefile: "entry.js", loader: "js" },
    bundle: true,
    format: "esm",
    platform: "neutral",
    mainFields: ["module", "main"],
    target: "es2022",
    // The WIT interfaces a component imports, which componentize-js links.
    external: ["jobhost:operator/*"],
    write: false,
    logLevel: "warning",
  });
  return result.outputFiles[0].contents;
}
