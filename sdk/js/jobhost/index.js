// jobhost: the JavaScript SDK for job host operators (`wit/operator.wit`, package
// `jobhost:operator@0.3.2`). An author extends `Operator`, `TimedOperator` (timers),
// `WindowOperator` (windows), `Source` or `Sink` and registers the class with one line,
// `register(MyOperator)`; `sdk/js/build.sh` makes the component.
//
// - `roles.js`: the base classes, with identity, state format and the methods to override.
// - `batch.js`: `Records` (a batch read as records, offsets checked) and `BatchBuilder`.
// - `state.js`: the portable state envelope (docs/state-format.md) and `KeyedState`.
// - `time.js`: `TimeDomain`, `Timers` (the host's, or `ManualTimers` in a test).
// - `window.js`, `aggregate.js`: `Windows`, `WindowOperator`, and the aggregates.
// - `guest.js`: the adapter from the WIT exports to the role class (errors, envelopes).
// - `register.js` / `exports.js`: the registration and the functions the component exports.

export { BatchBuilder, BatchError, Record, Records, isBytes, records } from "./batch.js";
export { Context, Guest, errorText } from "./guest.js";
export { register } from "./register.js";
export { Aggregate, aggregate, valueAsInteger } from "./aggregate.js";
export { Operator, Sink, Source, Stateful, TimedOperator } from "./roles.js";
export { ManualTimers, NO_WATERMARK, TimeDomain, Timers } from "./time.js";
export { LATE_KEY_PREFIX, Window, WindowOperator, Windows } from "./window.js";
export {
  KeyedState,
  StateError,
  decodeEnvelope,
  decodeValue,
  encodeEnvelope,
  encodeValue,
  openEnvelope,
  unsupportedVersion,
} from "./state.js";
