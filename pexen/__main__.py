"""``python -m pexen``: the ``pexen`` command."""

from __future__ import annotations

import sys

from pexen.cli import main

if __name__ == "__main__":
    sys.exit(main())
