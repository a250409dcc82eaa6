// The one registration line of a module: `register(MyOperator)`. It creates the instance the
// component's exports (`exports.js`) delegate to.

import { Guest } from "./guest.js";

let current;

/**
 * Makes `impl` (a subclass of `Operator`, `Source` or `Sink`, or an instance of one) the
 * module's implementation. Called once, at the top level of the author's module (which
 * componentize-js evaluates at build time).
 */
export function register(impl) {
  if (current !== undefined) {
    throw new Error(
      `register was called twice (${current.impl.constructor.name}, then ` +
        `${impl?.name ?? impl?.constructor?.name})`,
    );
  }
  current = new Guest(typeof impl === "function" ? new impl() : impl);
  return current;
}

/** The registered guest, if any. */
export function registered() {
  return current;
}

/** Forgets the registration: for build tools that import several modules in one process. */
export function unregister() {
  current = undefined;
}

/** The registered guest, or an error string (what an export may throw) if there is none. */
export function guest() {
  if (current === undefined) {
    throw "no module registered: call `register(YourClass)` at the top level of your module";
  }
  return current;
}
