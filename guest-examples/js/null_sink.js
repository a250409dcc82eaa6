// A sink that discards what it is given and counts it: the records of committed checkpoints and
// those written since. Its operator state, format `null-sink` version 1, is
// `[subtask, parallelism, committed, pending]`: who wrote it, the records of committed
// transactions, and `[checkpoint, records]` for each prepared one not yet committed. With
// `rescale` "union", after a parallelism change subtask 0 takes over what every old subtask
// counted, so that the total survives it.
// It logs the committed total on stdout at each commit when the config says `log = "true"`.

import { Sink, register } from "../../sdk/js/jobhost/index.js";

export class NullSink extends Sink {
  name = "null-sink";
  version = "1.0.0";
  rescale = "union";
  stateFormat = "null-sink";
  stateVersion = 1;

  init(ctx) {
    this.committed = 0;
    this.current = 0;
    this.pending = [];
    this.log = ctx.config.log === "true";
  }

  write(records) {
    this.current += records.length;
  }

  prepareCommit(checkpoint) {
    const last = this.pending.at(-1);
    if (last !== undefined && last[0] >= checkpoint) {
      throw new Error(`checkpoint ${checkpoint} is not after pending checkpoint ${last[0]}`);
    }
    this.pending.push([checkpoint, this.current]);
    this.current = 0;
  }

  commit(checkpoint) {
    while (this.pending.length > 0 && this.pending[0][0] <= checkpoint) {
      this.committed += this.pending.shift()[1];
    }
    if (this.log) console.log(`null-sink[${this.ctx.subtask}]: ${this.committed} committed`);
  }

  recover(checkpoint) {
    this.current = 0;
    this.commit(checkpoint);
  }

  snapshotOperatorState() {
    return [this.ctx.subtask, this.ctx.parallelism, this.committed, this.pending];
  }

  restoreOperatorState(payloads) {
    const [own] = payloads;
    if (payloads.length === 1 && own[0] === this.ctx.subtask && own[1] === this.ctx.parallelism) {
      [, , this.committed, this.pending] = own;
      return;
    }
    // A parallelism change: subtask 0 takes over every old subtask's counts (the pending ones
    // of the restored checkpoint are committed by `recover`); the others start from none.
    this.committed = 0;
    const pending = new Map();
    if (this.ctx.subtask === 0) {
      for (const [, , committed, transactions] of payloads) {
        this.committed += committed;
        for (const [checkpoint, n] of transactions) {
          pending.set(checkpoint, (pending.get(checkpoint) ?? 0) + n);
        }
      }
    }
    this.pending = [...pending].sort((a, b) => a[0] - b[0]);
  }
}

register(NullSink);
