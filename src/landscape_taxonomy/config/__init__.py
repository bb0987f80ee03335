"""params.yaml: its schema (schema.py: every section, key, default and bound; rugged.py the
rugged: section; base.py what every section is) and reading it (loading.py: YAML with no
duplicate keys, one-line errors naming the dotted key)."""
