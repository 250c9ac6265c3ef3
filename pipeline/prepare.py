"""DVC stage `prepare`: a thin wrapper around `whywarmup prepare` (see src/whywarmup/cli.py)."""

import sys

from whywarmup.cli import main

if __name__ == "__main__":
    sys.exit(main(["prepare", *sys.argv[1:]]))
