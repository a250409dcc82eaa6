// {{name}}: counts the records it is given and logs the count at each commit (a sink that writes
// somewhere would prepare a transaction in `prepareCommit` and publish it in `commit`).

import { Sink, register } from "./jobhost/index.js";

export class {{class}} extends Sink {
  name = "{{name}}";
  version = "0.1.0";
  rescale = "union";
  stateFormat = "{{name}}-count";
  stateVersion = 1;

  init(ctx) {
    this.records = 0;
    this.first = ctx.subtask === 0;
  }

  write(records) {
    this.records += records.length;
  }

  commit(checkpoint) {
    console.log(`checkpoint ${checkpoint}: ${this.records} records so far`);
  }

  snapshotOperatorState() {
    return this.records;
  }

  restoreOperatorState(payloads) {
    // `rescale = "union"`: every subtask is given every old subtask's count; the first takes
    // them all, so that the total survives a parallelism change.
    this.records = this.first ? payloads.reduce((sum, p) => sum + (p ?? 0), 0) : 0;
  }
}

register({{class}});
