"""The component's entry, which componentize-py builds: it registers {{class}} for world `{{role}}`."""

from jobhost import export

from {{module}} import {{class}}

WitWorld = export({{class}})
