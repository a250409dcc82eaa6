"""{{name}}: upper-cases each record's value, and counts records per key (keyed state, which the
SDK keeps by key group: checkpoints carry only what changed, and the job rescales)."""

from jobhost import Operator


class {{class}}(Operator):
    name = "{{name}}"
    version = "0.1.0"
    state_format = "{{name}}-counts"
    state_version = 1

    def process(self, records, keyed, out):
        for r in records:
            # Keyed state needs a key-by input edge; without one, leave `keyed` alone.
            if r.key_group is not None:
                keyed.put(r, keyed.get(r, 0) + 1)
            out.push(r.key, r.value.upper(), r.timestamp)
