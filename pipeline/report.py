"""DVC stage `report`: a thin wrapper around `whywarmup report` (see src/whywarmup/cli.py)."""

import sys

from whywarmup.cli import main

if __name__ == "__main__":
    sys.exit(main(["report", *sys.argv[1:]]))
