// The host's timers, in a component of world `timed-operator` only: the build bundles this
// module into such a component (componentize-js links the `timers` import); nothing else
// imports it, so that the SDK still loads on Node.js, where a test uses `ManualTimers`.

import { currentWatermark, delete as remove, register } from "jobhost:operator/timers@0.3.2";

import { useHostTimers } from "./time.js";

useHostTimers({ register, delete: remove, currentWatermark });
