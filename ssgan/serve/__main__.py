"""``python -m ssgan.serve CKPT``: the same as ``ssgan serve CKPT``."""

import sys

from ssgan.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
