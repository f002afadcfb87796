"""Must never be imported by a factory: it is the package's command line."""

raise SystemExit("mtpkg.__main__ was imported")
