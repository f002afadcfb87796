"""A module that fails on import: collection must record it and go on."""

raise RuntimeError("broken on purpose")
