"""``python -m ssgan …``: the same as the ``ssgan`` command (:func:`ssgan.cli.main`)."""

import sys

from ssgan.cli import main

if __name__ == "__main__":
    sys.exit(main())
