# Sourced by the scripts here; not executable, so pexen does not run it.
say() { printf '%s: %s\n' "${0##*/}" "$*"; }
