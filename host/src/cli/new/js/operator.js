// {{name}}: upper-cases each record's value, and counts records per key (keyed state, which the
// SDK keeps by key group: checkpoints carry only what changed, and the job rescales).

import { Operator, register } from "./jobhost/index.js";

export class {{class}} extends Operator {
  name = "{{name}}";
  version = "0.1.0";
  stateFormat = "{{name}}-counts";
  stateVersion = 1;

  process(records, keyed, out) {
    for (const r of records) {
      // Keyed state needs a key-by input edge; without one, leave `keyed` alone.
      if (r.keyGroup !== undefined) keyed.put(r, keyed.get(r, 0) + 1);
      out.push(r.key, r.valueText().toUpperCase(), r.timestamp);
    }
  }
}

register({{class}});
