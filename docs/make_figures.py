"""The pictures of the README and docs/training.md: the built-in data and the default run's last grid.

    python train.py && python docs/make_figures.py          # -> docs/data.png, docs/tiny_samples.png

``docs/data.png``: the first 8 items of the built-in dataset (the tiny preset's 32 px, seed 0), each
as image | coloured label, laid out like the training sample grids (enlarged the same way).
``docs/tiny_samples.png``: a copy of the newest ``runs/tiny/samples/<step>.png`` (G-EMA on the run's
fixed latents: image | fine mask | coarse mask).
"""

from __future__ import annotations

import argparse
import math
import shutil
from pathlib import Path

import numpy as np
import torch

from ssgan.data.synthetic import SyntheticFaces
from ssgan.model.config import preset
from ssgan.provenance import ALGORITHMIC, Provenance, save_image, software
from ssgan.train.rundir import SAMPLE_MIN_PIXELS
from ssgan.visualize import PALETTE, grid, resize_nearest


def data_grid(n: int, size: int, seg_dim: int, path: Path) -> Path:
    ds = SyntheticFaces(size, n, seed=0, seg_dim=seg_dim)
    show = max(size, SAMPLE_MIN_PIXELS)
    tiles = []
    for i in range(n):
        image, label = ds.render(i)
        tiles += [resize_nearest(image[None], show)[0], resize_nearest(PALETTE[label][None], show)[0]]
    prov = Provenance(ALGORITHMIC, "docs-data-grid", software(), None, False, 0)  # procedural data
    return save_image(grid(np.stack(tiles), ncol=2 * math.ceil(math.sqrt(n))), path, prov)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", default="runs/tiny", help="run folder whose newest sample grid is copied")
    p.add_argument("--out", default=str(Path(__file__).parent))
    args = p.parse_args()
    out = Path(args.out)
    cfg = preset("tiny")
    print(data_grid(8, cfg.size, cfg.seg_dim, out / "data.png"))
    samples = sorted((Path(args.run) / "samples").glob("*.png"))
    if not samples:
        raise SystemExit(f"error: no samples in {args.run}/samples; run `python train.py` first")
    print(shutil.copyfile(samples[-1], out / "tiny_samples.png"), f"(from {samples[-1]})")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
