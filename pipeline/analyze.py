"""DVC stage `analyze`: a thin wrapper around `whywarmup analyze` (see src/whywarmup/cli.py)."""

import sys

from whywarmup.cli import main

if __name__ == "__main__":
    sys.exit(main(["analyze", *sys.argv[1:]]))
