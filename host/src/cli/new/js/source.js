// {{name}}: emits the numbers 0 to `count` - 1 (config key, default 1000) as records, spread over
// its subtasks; its position is its operator state.

import { Source, register } from "./jobhost/index.js";

export class {{class}} extends Source {
  name = "{{name}}";
  version = "0.1.0";
  stateFormat = "{{name}}-position";
  stateVersion = 1;

  init(ctx) {
    this.count = Number(ctx.config.count ?? "1000");
    this.parallelism = ctx.parallelism;
    this.next = ctx.subtask;
  }

  poll(maxRecords, out) {
    while (this.next < this.count && out.length < maxRecords) {
      const n = String(this.next);
      out.push(n, n, this.next);
      this.next += this.parallelism;
    }
    return this.next < this.count;
  }

  snapshotOperatorState() {
    return this.next;
  }

  restoreOperatorState(payloads) {
    // It does not rescale (`rescale = "refuse"`): one position, or none.
    const positions = payloads.filter((p) => p !== undefined && p !== null);
    if (positions.length > 1) throw new Error(`one position per subtask, not ${positions.length}`);
    if (positions.length === 1) this.next = positions[0];
  }
}

register({{class}});
