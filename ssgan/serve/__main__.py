"""``python -m ssgan.serve CKPT``: the same as ``ssgan serve CKPT`` (:func:`ssgan.serve.commands.main`)."""

import sys

from ssgan.serve.commands import main

if __name__ == "__main__":
    sys.exit(main())
