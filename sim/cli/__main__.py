"""``python -m sim.cli``: the same command line as ``capsim``."""

import sys

from sim.cli import main

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
