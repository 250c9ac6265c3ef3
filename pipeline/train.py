"""DVC stage `train`: a thin wrapper around `whywarmup train` (see src/whywarmup/cli.py)."""

import sys

from whywarmup.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
