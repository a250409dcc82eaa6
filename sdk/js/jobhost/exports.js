// The functions a component exports, for every role's world (`wit/operator.wit`): the build
// re-exports those of the registered module's world from its entry point. Each delegates to the
// registered `Guest`.

import { guest } from "./register.js";

export const describe = () => guest().describe();
export const init = (ctx) => guest().init(ctx);
export const snapshot = (checkpointId, full) => guest().snapshot(checkpointId, full);
export const restore = (state, origin) => guest().restore(state, origin);
export const process = (input) => guest().process(input);
export const onTimer = (domain, fired) => guest().onTimer(domain, fired);
export const catchUp = {
  restoreChanges: (changes, origin) => guest().restoreChanges(changes, origin),
};
export const pollBatch = (maxRecords) => guest().pollBatch(maxRecords);
export const writeBatch = (input) => guest().writeBatch(input);
export const prepareCommit = (checkpointId) => guest().prepareCommit(checkpointId);
export const commit = (checkpointId) => guest().commit(checkpointId);
export const recover = (checkpointId) => guest().recover(checkpointId);
