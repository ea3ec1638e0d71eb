"""Edit locality: how much of an edit's pixel change lands inside the edited classes' masks.

For a source latent w and an edited one w' that changes the codes of classes C only (``mix``:
C's shape/texture codes taken from another latent; ``edit``: a move along a direction restricted
to C's codes), with d(p) = mean over RGB of |G(w')(p) − G(w)(p)| (8-bit levels,
:func:`ssgan.edit.editing.change`) and the region

    R = dilate_r({p : argmax seg_w(p) ∈ C} ∪ {p : argmax seg_w'(p) ∈ C})

(the union of the before and after masks, grown by r pixels with a (2r+1)² square: the fine mask's
edges are soft, and a changed shape also moves its neighbours' borders), the **locality** of a set
of N edits is

    share = Σ_n Σ_{p ∈ R_n} d_n(p) / Σ_n Σ_p d_n(p)    ∈ [0, 1],   area = mean_n |R_n| / (H·W).

An edit that changes nothing outside C's masks scores 1. A change spread evenly over the image
scores ≈ area: that is the **baseline** measured beside it, the same regions with *every* code
moved (w' = the other latent). :func:`locality` runs both for each class over N random latents;
a class that no render shows (empty R) has no share and is left out of the mean over classes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ssgan import visualize as V
from ssgan.edit import editing as E
from ssgan.model import latents as L
from ssgan.model.generator import SemanticGenerator, Synthesis

__all__ = ["change_locality", "dilate", "locality", "locality_figure", "locality_sums"]


def dilate(region: torch.Tensor, radius: int) -> torch.Tensor:
    """(N, H, W) bool grown by ``radius`` pixels (max over a (2r+1)² square)."""
    if radius <= 0:
        return region.bool()
    x = region.float()[:, None]
    return F.max_pool2d(x, 2 * radius + 1, stride=1, padding=radius)[:, 0] > 0


def locality_sums(source: Synthesis, result: Synthesis, classes: Sequence[int],
                  radius: int = 2) -> dict[str, Any]:
    """The pieces of the share for one batch of edits: Σ d over R, Σ d, Σ |R|, Σ pixels, and the
    maps ``d`` (N, H, W) and ``region`` R (N, H, W) bool (module docstring)."""
    c = E.change(source, result, classes)
    d = torch.from_numpy(c["diff_values"]).double()
    region = dilate(torch.from_numpy(c["region"]), radius)
    return {"inside": float(d[region].sum()), "total": float(d.sum()), "region_pixels": int(region.sum()),
            "pixels": region.numel(), "d": d, "region": region}


def _share(s: dict[str, float]) -> float:
    """NaN when nothing changed or the class is drawn nowhere (no region to be local to)."""
    return s["inside"] / s["total"] if s["total"] > 0 and s["region_pixels"] > 0 else math.nan


def change_locality(source: Synthesis, result: Synthesis, classes: Sequence[int],
                    radius: int = 2) -> dict[str, float]:
    """{share, area} of the edits source → result for ``classes`` (module docstring); share is NaN
    when nothing changed."""
    s = locality_sums(source, result, classes, radius)
    return {"share": _share(s), "area": s["region_pixels"] / s["pixels"]}


def locality_figure(source: Synthesis, result: Synthesis, classes: Sequence[int],
                    radius: int = 2) -> tuple[np.ndarray, list[float]]:
    """One row per edit: before | after | heat map of d | the region R (white), small models
    enlarged; and each edit's share (NaN where nothing changed). What ``mix --diff`` and
    ``edit --diff`` write."""
    s = locality_sums(source, result, classes, radius)
    d, region = s["d"], s["region"]
    shares = [float(d[i][region[i]].sum() / d[i].sum()) if d[i].sum() > 0 else math.nan
              for i in range(d.shape[0])]
    mask = np.repeat((region.numpy()[..., None] * 255).astype(np.uint8), 3, -1)
    rows = [V.to_uint8(source.rgb.float().clamp(-1, 1)), V.to_uint8(result.rgb.float().clamp(-1, 1)),
            V.heatmap(d), mask]
    tiles = np.stack([t[i] for i in range(d.shape[0]) for t in rows])
    return V.grid(V.enlarge(tiles), ncol=4), shares


@torch.no_grad()
def locality(G: SemanticGenerator, n: int = 64, seed: int = 0, radius: int = 2, part: str = "all",
             classes: Sequence[int] | None = None, direction: np.ndarray | torch.Tensor | None = None,
             strength: float = 3.0, batch: int = 16, progress: bool = False) -> dict[str, Any]:
    """Locality of class edits over ``n`` latents (z drawn with ``seed``; the other latents with
    seed + 1), per class in ``classes`` (default all), and the baseline:

    * without ``direction`` (mix): w' = w with class k's ``part`` codes from the other latent;
      baseline w' = the other latent (every code moved);
    * with a ``direction`` (n_latent, D): w' = w + strength · direction on class k's codes only;
      baseline: the same move on every code.

    Returns {"per_class": {k: {share, baseline_share, area}}, "share", "baseline_share", "area"
    (means over the classes with a defined share), "n", "radius", "mode"}."""
    cfg = G.config
    classes = list(range(cfg.seg_dim)) if classes is None else [int(k) for k in classes]
    src_all = E.sample_latents(G, n, seed)
    ref_all = E.sample_latents(G, n, seed + 1)
    d = None
    if direction is not None:
        d = torch.as_tensor(np.asarray(direction), dtype=torch.float32, device=src_all.device)
        if d.shape != (cfg.n_latent, cfg.style_dim):
            raise ValueError(f"direction has shape {tuple(d.shape)} but this model needs "
                             f"({cfg.n_latent}, {cfg.style_dim})")
    keys = ("inside", "total", "region_pixels", "pixels")
    sums = {k: {m: dict.fromkeys(keys, 0.0) for m in ("edit", "baseline")} for k in classes}
    bar = tqdm(total=n * len(classes), desc="locality", unit="edit", disable=not progress, leave=False)
    for s in range(0, n, batch):
        src, ref = src_all[s:s + batch], ref_all[s:s + batch]
        before = E.render(G, src)
        if d is None:
            moved_all = ref
        else:
            moved_all = src + strength * d
        after_all = E.render(G, moved_all)
        for k in classes:
            if d is None:
                edited = L.replace_codes(src, ref, [k], part, cfg)
            else:
                mask = torch.zeros(cfg.n_latent, 1, device=src.device)
                mask[L.class_codes([k], "all", cfg)] = 1
                edited = src + strength * d * mask
            for mode, after in (("edit", E.render(G, edited)), ("baseline", after_all)):
                part_sums = locality_sums(before, after, [k], radius)
                for key in keys:
                    sums[k][mode][key] += part_sums[key]
            bar.update(src.shape[0])
    bar.close()
    per_class = {k: {"share": _share(v["edit"]), "baseline_share": _share(v["baseline"]),
                     "area": v["edit"]["region_pixels"] / max(v["edit"]["pixels"], 1)}
                 for k, v in sums.items()}
    defined = [v for v in per_class.values() if not math.isnan(v["share"])]

    def mean(key: str) -> float:
        vals = [v[key] for v in defined if not math.isnan(v[key])]
        return float(np.mean(vals)) if vals else math.nan

    return {"per_class": per_class, "share": mean("share"), "baseline_share": mean("baseline_share"),
            "area": mean("area"), "n": n, "radius": radius,
            "mode": "mix" if d is None else f"direction x {strength:g}", "part": part}
