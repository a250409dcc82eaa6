// A pass-through operator that throws a JavaScript exception on demand, for tests of how the
// host reports a failing JS guest. Config: `throw_in`, one of `init`, `process`, `snapshot`,
// `restore` (default: never), and `after_records` (default 0): in `process`, it throws once it
// has passed that many records on. The exception is a `TypeError` whose message names the
// phase. Its operator state (format `faulty` version 1) is the number of records passed on.

import { Operator, register } from "../../../sdk/js/jobhost/index.js";

const PHASES = ["init", "process", "snapshot", "restore"];

export class Faulty extends Operator {
  name = "faulty";
  version = "1.0.0";
  stateFormat = "faulty";
  stateVersion = 1;

  init(ctx) {
    this.throwIn = ctx.config.throw_in;
    if (this.throwIn !== undefined && !PHASES.includes(this.throwIn)) {
      throw new RangeError(`throw_in is one of ${PHASES.join(", ")}, not \`${this.throwIn}\``);
    }
    this.afterRecords = Number(ctx.config.after_records ?? "0");
    this.passed = 0;
    this.fail("init");
  }

  fail(phase) {
    if (this.throwIn === phase) {
      throw new TypeError(`faulty operator ${this.ctx.operatorId}[${this.ctx.subtask}] threw in ${phase} on purpose`);
    }
  }

  process(records, _keyed, out) {
    for (const r of records) {
      if (this.passed >= this.afterRecords) this.fail("process");
      out.push(r.key, r.value, r.timestamp);
      this.passed += 1;
    }
  }

  snapshotOperatorState() {
    this.fail("snapshot");
    return this.passed;
  }

  restoreOperatorState(payloads) {
    this.fail("restore");
    this.passed = payloads.reduce((sum, n) => sum + n, 0);
  }
}

register(Faulty);
