"""The CelebAMask-HQ label converter (``ssgan data celebamask``): the per-part masks of
``CelebAMask-HQ-mask-anno`` become label PNGs of the 13 classes of docs/training.md
("CelebAMask-HQ classes"), painted in the order of the official SemanticStyleGAN
``data/preprocess_celeba.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ssgan.data.base import PIL_ERRORS, DatasetError

#: CelebAMask-HQ part -> class (docs/training.md, "CelebAMask-HQ classes"), in paint order (later
#: parts overwrite earlier ones), as in the official SemanticStyleGAN ``data/preprocess_celeba.py``.
CELEBAMASK_PARTS: tuple[tuple[str, int], ...] = (
    ("skin", 1), ("eye_g", 10), ("l_eye", 2), ("r_eye", 2), ("l_brow", 3), ("r_brow", 3),
    ("mouth", 4), ("l_lip", 4), ("u_lip", 4), ("nose", 5), ("hair", 7), ("l_ear", 6), ("r_ear", 6),
    ("neck", 8), ("neck_l", 8), ("cloth", 9), ("hat", 11), ("ear_r", 12),
)
_PART_CLASS = dict(CELEBAMASK_PARTS)


def _celebamask_one(job: tuple[int, dict[str, Path], Path, int]) -> None:
    ident, parts, out_dir, size = job
    label = np.zeros((size, size), dtype=np.uint8)
    for part, cls in CELEBAMASK_PARTS:
        path = parts.get(part)
        if path is None:
            continue
        try:
            with Image.open(path) as im:
                if im.size != (size, size):
                    raise DatasetError(
                        f"mask {path} is {im.size[0]}x{im.size[1]} but {size}x{size} was expected; "
                        f"CelebAMask-HQ masks are 512x512 (pass --size {im.size[0]} if yours were resized)"
                    )
                on = np.asarray(im.convert("L")) >= 128
        except DatasetError:
            raise
        except PIL_ERRORS as e:
            raise DatasetError(f"cannot read mask {path}: {e} (re-download or re-extract it)") from e
        label[on] = cls
    Image.fromarray(label).save(out_dir / f"{ident}.png")


def celebamask_labels(anno_dir: str | Path, out_dir: str | Path, size: int = 512, progress: bool = True,
                      workers: int = 0) -> int:
    """Convert CelebAMask-HQ's per-part masks to label PNGs of the 13 classes of docs/training.md.

    ``anno_dir`` is ``CelebAMask-HQ-mask-anno`` holding ``<0..14>/<5-digit id>_<part>.png``
    (white = part); each id becomes ``out_dir/<id>.png`` (mode L, ``size x size``, the id without
    leading zeros, matching CelebA-HQ-img's ``<id>.jpg``), parts painted in
    :data:`CELEBAMASK_PARTS` order. Masks must be ``size x size``. Returns the number written.
    """
    anno = Path(anno_dir)
    if not anno.is_dir():
        raise DatasetError(
            f"CelebAMask-HQ annotation folder {anno} does not exist; pass the CelebAMask-HQ-mask-anno "
            f"folder (it holds the subfolders 0 .. 14)"
        )
    jobs: dict[int, dict[str, Path]] = {}
    for path in sorted(anno.glob("*/*.png")):
        ident, _, part = path.stem.partition("_")
        if not ident.isdigit() or part not in _PART_CLASS:
            raise DatasetError(
                f"unexpected file {path}: CelebAMask-HQ masks are named <id>_<part>.png with part one "
                f"of {', '.join(_PART_CLASS)}; move it out of {anno}"
            )
        parts = jobs.setdefault(int(ident), {})
        if part in parts:
            raise DatasetError(f"two masks for image {int(ident)}, part {part}: {parts[part]} and {path}")
        parts[part] = path
    if not jobs:
        raise DatasetError(f"no mask PNGs under {anno}/<0..14>/; is this the CelebAMask-HQ-mask-anno folder?")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    todo = [(ident, jobs[ident], out, size) for ident in sorted(jobs)]
    from tqdm import tqdm

    bar = tqdm(total=len(todo), desc="CelebAMask-HQ labels", unit="img", disable=not progress)
    if workers > 0:
        import multiprocessing

        with multiprocessing.Pool(workers) as pool:
            for _ in pool.imap_unordered(_celebamask_one, todo, chunksize=16):
                bar.update()
    else:
        for job in todo:
            _celebamask_one(job)
            bar.update()
    bar.close()
    return len(todo)
