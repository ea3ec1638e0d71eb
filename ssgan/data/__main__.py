"""``python -m ssgan.data ACTION …``: the same command as ``ssgan data ACTION …``
(:mod:`ssgan.data.commands`): ``celebamask``, ``synthetic``, ``from-colors``, ``inspect``."""

import sys

from ssgan.data.commands import main

if __name__ == "__main__":
    sys.exit(main())
