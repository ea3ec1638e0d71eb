"""Train SemanticStyleGAN: ``python train.py [flags]``, the same command as ``ssgan train``.

The loop and its flags are in ``ssgan/train/loop.py`` (``python train.py --help``).
"""

import sys

from ssgan.train.loop import main

if __name__ == "__main__":
    sys.exit(main())
