"""Attribute directions in the compact W+ space (InterFaceGAN-style) and edits confined to classes.

**Fitting** (:func:`fit_direction`). Given latents w_i (N, n_latent, D) with binary labels
y_i ∈ {0, 1} (the user's annotations, or a classifier run on the images), the chosen codes —
every code, or the shape and texture codes of some classes — are flattened into x_i ∈ R^{m·D},
centred (x̄ = mean x_i), and a logistic regression is fitted by L-BFGS:

    min_{a, b}  mean_i softplus(−s_i (aᵀ(x_i − x̄) + b)) + ½ λ ‖a‖²,   s_i = 2 y_i − 1.

The direction is the boundary's unit normal n = a / ‖a‖, laid back into an (n_latent, D) array that
is zero on every other code, pointing towards y = 1.

**Editing** (:func:`edit_latents`, :func:`edit`). w(s) = w + s · n ⊙ M, with M the 0/1 mask of
the chosen classes' codes (by default the codes n touches), so no other code moves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ssgan import visualize as V
from ssgan.edit import editing as E
from ssgan.model import latents as L
from ssgan.model.config import SSGANConfig
from ssgan.model.generator import SemanticGenerator


def code_index(cfg: SSGANConfig, classes: Sequence[int] | None = None) -> list[int]:
    """Compact W+ codes an attribute may use: all of them, or ``classes``' shape and texture codes."""
    return list(range(cfg.n_latent)) if classes is None else L.class_codes(classes, "all", cfg)


def fit_direction(latents: np.ndarray | torch.Tensor, labels: Sequence[int] | np.ndarray, cfg: SSGANConfig,
                  classes: Sequence[int] | None = None, l2: float = 1e-2,
                  max_iter: int = 200) -> tuple[np.ndarray, dict[str, Any]]:
    """The unit normal (n_latent, D) float32 of the logistic boundary (module docstring) and
    {samples, positives, train_accuracy, codes}. Raises ``ValueError`` for mismatched shapes or a
    single label value."""
    w = torch.as_tensor(np.asarray(latents), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.float64).flatten()
    if w.ndim != 3 or w.shape[1:] != (cfg.n_latent, cfg.style_dim):
        raise ValueError(f"latents have shape {tuple(w.shape)} but this model needs "
                         f"(N, {cfg.n_latent}, {cfg.style_dim})")
    if y.shape[0] != w.shape[0]:
        raise ValueError(f"{w.shape[0]} latents but {y.shape[0]} labels")
    if not bool(((y == 0) | (y == 1)).all()):
        raise ValueError("labels must be 0 or 1")
    positives = int(y.sum())
    if positives in (0, y.shape[0]):
        raise ValueError(f"all {y.shape[0]} labels are {int(y[0])}: a direction needs both values")
    index = code_index(cfg, classes)
    x = w[:, index].flatten(1)
    x = x - x.mean(0)
    sign = 2 * y - 1
    a = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optim = torch.optim.LBFGS([a, b], max_iter=max_iter, tolerance_grad=1e-9, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optim.zero_grad()
        loss = torch.nn.functional.softplus(-sign * (x @ a + b)).mean() + 0.5 * l2 * a.square().sum()
        loss.backward()
        return loss

    optim.step(closure)
    a = a.detach()
    if not bool(a.norm() > 0):
        raise ValueError("the fitted boundary is degenerate (zero normal): the labels carry no signal")
    direction = np.zeros((cfg.n_latent, cfg.style_dim), np.float32)
    direction[index] = (a / a.norm()).view(len(index), cfg.style_dim).numpy()
    accuracy = float((((x @ a + b.detach()) > 0).double() == y).double().mean())
    return direction, {"samples": int(y.shape[0]), "positives": positives, "train_accuracy": accuracy,
                       "codes": index}


def touched_classes(direction: np.ndarray, cfg: SSGANConfig) -> list[int]:
    """Classes whose shape or texture code the direction moves."""
    d = np.abs(np.asarray(direction)).sum(-1)
    return [k for k in range(cfg.seg_dim) if d[L.class_codes([k], "all", cfg)].any()]


def edit_latents(latent: torch.Tensor, direction: np.ndarray | torch.Tensor, strengths: Sequence[float],
                 cfg: SSGANConfig, classes: Sequence[int] | None = None) -> torch.Tensor:
    """(S, n_latent, D): latent (1, n_latent, D) + s · direction on ``classes``' codes (all codes
    when None) for each strength s."""
    d = torch.as_tensor(np.asarray(direction), dtype=latent.dtype, device=latent.device)
    if d.shape != (cfg.n_latent, cfg.style_dim):
        raise ValueError(f"direction has shape {tuple(d.shape)} but this model needs "
                         f"({cfg.n_latent}, {cfg.style_dim})")
    mask = torch.zeros(cfg.n_latent, 1, dtype=latent.dtype, device=latent.device)
    mask[code_index(cfg, classes)] = 1
    s = torch.tensor([float(v) for v in strengths], dtype=latent.dtype, device=latent.device).view(-1, 1, 1)
    return latent[:1] + s * (d * mask)


@torch.no_grad()
def edit(G: SemanticGenerator, latent: np.ndarray | torch.Tensor, direction: np.ndarray | torch.Tensor,
         strengths: Sequence[float], classes: Sequence[int] | None = None) -> dict[str, Any]:
    """Render ``latent`` moved along ``direction`` by each strength inside ``classes`` (default: the
    classes the direction touches, or every code if it touches the base codes; a StyleGAN2
    generator: every code, and the whole image is the region). Returns ``frames`` (image | mask
    per strength, the image alone for StyleGAN2; small models enlarged by
    :func:`ssgan.visualize.enlarge`),
    ``latents`` (S, n_latent, D), ``classes``, and per strength the change against the unedited
    latent (:func:`ssgan.edit.editing.change`): ``diff`` heat maps, ``inside`` / ``outside`` means."""
    cfg = G.config
    src = E.as_latent(latent, G)[:1]
    if cfg.semantic and classes is None and not np.abs(np.asarray(direction))[:cfg.base_layers].any():
        classes = touched_classes(np.asarray(direction), cfg)
    codes = edit_latents(src, direction, strengths, cfg, classes)
    region = list(range(cfg.seg_dim)) if classes is None else list(classes)
    original = E.render(G, src)
    frames, diffs, inside, outside = [], [], [], []
    for i in range(codes.shape[0]):
        r = E.render(G, codes[i:i + 1])
        tiles = [V.to_uint8(r.rgb)[0]] + ([] if r.seg is None else [V.colorize(r.seg)[0]])
        frames.append(V.grid(V.enlarge(np.stack(tiles)), ncol=len(tiles)))
        c = E.change(original, r, region)
        diffs.append(V.enlarge(c["diff"])[0])
        inside.append(c["inside"])
        outside.append(c["outside"])
    return {"frames": frames, "diff": np.stack(diffs), "inside": inside, "outside": outside,
            "latents": codes.cpu().numpy(), "classes": classes}
