"""The model side of the editor: one generator shared by every session, the edits as functions of
compact W+ latents, and renders that re-run only the local generators whose codes changed.

**What is cached, and why it is exact.** Local generator k reads only its own L expanded codes
(:func:`ssgan.model.latents.expand_index`), so its hidden features and pseudo-depth depend on
nothing else. :class:`LocalCache` keeps the last render's expanded codes and per-class outputs;
a new render recomputes the classes whose codes differ (bit for bit) and reuses the others, then
runs the fusion and the render net (which see every class) in full. The reused hidden features are
bit-identical to a full recompute; on CPU a subset's pseudo-depth matmul can take another BLAS path
(differences ~1e-7), so renders agree to float rounding (tests/test_serve.py). The mapping of a seed's z is
cached too (:meth:`Engine.sample`), and so are the truncation centre, the inversion's mean latent
and the principal components.

**Compiled** (``compile=True``, ``ssgan serve --compile``, the default): the full local-generator
pass and the fusion + render net run through inductor (:class:`ssgan.model.compiled.Compiled`);
a subset of local generators (a one-class edit) runs eagerly, so one graph serves every class.
The inversion's latent search stays eager (compiled, it did not pay on CPU: docs/performance.md).
Compiled and eager renders agree to float rounding (tests/test_compiled.py).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssgan import visualize as V
from ssgan.classes import ClassInfo
from ssgan.edit import directions as D
from ssgan.edit import editing as E
from ssgan.edit import inversion as I
from ssgan.model import latents as L
from ssgan.model.compiled import Compiled
from ssgan.model.generator import SemanticGenerator, Synthesis
from ssgan.serve.errors import ClientError

PARTS = ("shape", "texture", "all")
N_COMPONENTS = 5  # principal components offered per class when no direction files are given
SEEDS = (-2**63, 2**64 - 1)  # what torch.Generator.manual_seed accepts


@dataclass
class LocalCache:
    """The last render's expanded codes (1, K·L, D) and local-generator outputs h (1, K, P, C),
    depth (1, K, P); ``recomputed``: the classes the last render had to run."""

    codes: torch.Tensor | None = None
    h: torch.Tensor | None = None
    depth: torch.Tensor | None = None
    recomputed: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Direction:
    """A direction in compact W+ (n_latent, D) and its unit for the strength slider."""

    name: str
    vector: np.ndarray
    note: str


def load_directions(folder: str | Path, n_latent: int, style_dim: int) -> dict[str, np.ndarray]:
    """Every ``*.npy`` in ``folder`` (``ssgan direction`` files, (n_latent, D)) by stem; a missing
    folder, an unreadable file or a wrong shape is a one-line ``ValueError`` naming it."""
    path = Path(folder)
    if not path.is_dir():
        raise ValueError(f"--directions {path} is not a folder")
    out = {}
    for f in sorted(path.glob("*.npy")):
        try:
            array = np.load(f, allow_pickle=False)
        except Exception as e:  # numpy raises several types for a bad file
            raise ValueError(f"direction file {f} is not a .npy array: {e}") from None
        if array.shape != (n_latent, style_dim):
            raise ValueError(f"direction file {f} has shape {array.shape} but this model needs "
                             f"({n_latent}, {style_dim})")
        out[f.stem] = array.astype(np.float32)
    if not out:
        raise ValueError(f"--directions {path} holds no .npy file")
    return out


class Engine:
    """One generator and its classes, with the caches every session shares (thread-safe)."""

    def __init__(self, G: SemanticGenerator, classes: ClassInfo,
                 directions: dict[str, np.ndarray] | None = None, truncation: float = 0.7,
                 mapping_cache: int = 256, encoder: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 compile: bool = False):
        self.G = G.eval().requires_grad_(False)
        self.cfg = G.config
        self.classes = classes
        self.colors = V.palette(classes.k, classes.colors)
        self.truncation = truncation
        self.device = next(G.parameters()).device
        self.user_directions = dict(directions or {})
        self.encoder = encoder  # image (1, 3, S, S) in [−1, 1] → compact W+ (1, n_latent, D), or None
        self._lock = threading.Lock()
        self._mapped: OrderedDict[tuple[int, float], torch.Tensor] = OrderedDict()
        self._mapping_cache = mapping_cache
        self._mean: torch.Tensor | None = None
        self._inversion_mean: torch.Tensor | None = None
        self._components: tuple[torch.Tensor, torch.Tensor] | None = None
        self.compile = compile
        self._local_all = Compiled(self.G.local_features, "the local generators", compile)
        self._fuse_render = Compiled(self._synthesize, "the fusion and render net", compile)

    def _synthesize(self, codes: torch.Tensor, h: torch.Tensor, depth: torch.Tensor) -> Synthesis:
        return self.G.synthesize(codes, randomize_noise=False, local=(h, depth))

    # ----- latents ------------------------------------------------------------------------
    def mean(self) -> torch.Tensor:
        """The truncation centre (1, D), computed once (:func:`ssgan.edit.editing.mean_w`)."""
        with self._lock:
            if self._mean is None:
                self._mean = E.mean_w(self.G, 0, 4096)
            return self._mean

    def sample(self, seed: int, truncation: float | None = None) -> torch.Tensor:
        """Compact W+ (1, n_latent, D) of ``seed`` (:func:`ssgan.edit.editing.sample_latents`), the
        mapping cached per (seed, truncation)."""
        psi = self.truncation if truncation is None else float(truncation)
        if not 0 <= psi <= 1:
            raise ClientError(f"truncation must be in [0, 1], not {psi}")
        seed = int(seed)
        if not SEEDS[0] <= seed <= SEEDS[1]:
            raise ClientError(f"seed must be a 64-bit integer ({SEEDS[0]} … {SEEDS[1]}), not {seed}")
        key = (seed, psi)
        with self._lock:
            hit = self._mapped.get(key)
            if hit is not None:
                self._mapped.move_to_end(key)
                return hit.clone()
        mean = self.mean() if psi < 1 else None
        latent = E.sample_latents(self.G, 1, seed, psi, mean)
        with self._lock:
            self._mapped[key] = latent
            while len(self._mapped) > self._mapping_cache:
                self._mapped.popitem(last=False)
        return latent.clone()

    def check_classes(self, classes: Sequence[int]) -> list[int]:
        out = sorted({int(c) for c in classes})
        if not out:
            raise ClientError("pick at least one region first")
        bad = [c for c in out if not 0 <= c < self.cfg.seg_dim]
        if bad:
            raise ClientError(f"class {bad[0]} is out of range: this model has {self.cfg.seg_dim} classes")
        return out

    @staticmethod
    def check_part(part: str) -> str:
        if part not in PARTS:
            raise ClientError(f"part must be one of {', '.join(PARTS)}, not {part!r}")
        return part

    def replace(self, latent: torch.Tensor, source: torch.Tensor, classes: Sequence[int], part: str
                ) -> torch.Tensor:
        """``latent`` with ``classes``' ``part`` codes taken from ``source`` (resample, copy)."""
        return L.replace_codes(latent, source, self.check_classes(classes), self.check_part(part), self.cfg)

    def interpolate(self, anchor: torch.Tensor, reference: torch.Tensor, classes: Sequence[int], part: str,
                    t: float) -> torch.Tensor:
        """anchor + t · (replace(anchor, reference) − anchor): those codes only move, t in [0, 1]."""
        if not 0 <= t <= 1:
            raise ClientError(f"t must be in [0, 1], not {t}")
        end = self.replace(anchor, reference, classes, part)
        return anchor + float(t) * (end - anchor)

    def direction_names(self) -> list[str]:
        """User directions (``--directions``) when given, else ``pc1`` … principal components."""
        if self.user_directions:
            return sorted(self.user_directions)
        return [f"pc{i + 1}" for i in range(N_COMPONENTS)]

    def components(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The top principal axes (N_COMPONENTS, D) of w = mapping(z) over 2048 seeded z and their
        standard deviations; in a sample's compact W+ every class's codes are that w, so these are
        the principal components of each class's codes."""
        with self._lock:
            if self._components is None:
                w = E.sample_latents(self.G, 2048, seed=20221, truncation=1.0)[:, 0].double()
                w = w - w.mean(0)
                _, s, vh = torch.linalg.svd(w, full_matrices=False)
                n = min(N_COMPONENTS, vh.shape[0])
                self._components = (vh[:n].float(), (s[:n] / (w.shape[0] - 1) ** 0.5).float())
            return self._components

    def direction(self, name: str, classes: Sequence[int], part: str) -> Direction:
        """The named direction as (n_latent, D), confined to ``classes``' ``part`` codes. A principal
        component is scaled to one standard deviation per unit; a user file is used as written."""
        classes, part = self.check_classes(classes), self.check_part(part)
        cfg = self.cfg
        codes = L.class_codes(classes, part, cfg)
        if self.user_directions:
            if name not in self.user_directions:
                raise ClientError(f"unknown direction {name!r}; known: {', '.join(self.direction_names())}")
            vector = np.zeros((cfg.n_latent, cfg.style_dim), np.float32)
            vector[codes] = self.user_directions[name][codes]
            if not np.abs(vector).any():
                raise ClientError(f"direction {name!r} does not move the {part} codes of the chosen regions")
            return Direction(name, vector, "user direction")
        if name not in self.direction_names():
            raise ClientError(f"unknown direction {name!r}; known: {', '.join(self.direction_names())}")
        axes, sigma = self.components()
        i = int(name[2:]) - 1
        vector = np.zeros((cfg.n_latent, cfg.style_dim), np.float32)
        vector[codes] = (axes[i] * sigma[i]).cpu().numpy()
        return Direction(name, vector, f"principal component {i + 1} of w (1 = one standard deviation)")

    def move(self, anchor: torch.Tensor, direction: Direction, classes: Sequence[int],
             strength: float) -> torch.Tensor:
        """anchor + strength · direction inside ``classes``' codes
        (:func:`ssgan.edit.directions.edit_latents`)."""
        classes = self.check_classes(classes)
        return D.edit_latents(anchor, direction.vector, [float(strength)], self.cfg, classes)

    # ----- rendering ----------------------------------------------------------------------
    @torch.no_grad()
    def render(self, latent: torch.Tensor, cache: LocalCache | None = None) -> Synthesis:
        """Compact W+ (1, n_latent, D) → :class:`Synthesis` with the stored noise (as
        :func:`ssgan.edit.editing.render`), reusing ``cache``'s unchanged classes (module doc)."""
        latent = latent.to(self.device)
        codes = self.G.expand_latents(latent)
        if cache is None:
            return self._fuse_render(codes, *self._local_all(codes))
        K = self.cfg.seg_dim
        if cache.codes is None or cache.codes.shape != codes.shape:
            changed = list(range(K))
        else:
            per_class = (cache.codes != codes).view(1, K, -1).any(-1)[0]
            changed = [k for k in range(K) if bool(per_class[k])]
        if len(changed) == K:
            h, depth = self._local_all(codes)
        else:
            h, depth = cache.h.clone(), cache.depth.clone()
            if changed:
                h_new, depth_new = self.G.local_features(codes, classes=changed)
                h[:, changed], depth[:, changed] = h_new, depth_new
        cache.codes, cache.h, cache.depth, cache.recomputed = codes, h, depth, changed
        return self._fuse_render(codes, h, depth)

    def pictures(self, out: Synthesis) -> dict[str, np.ndarray]:
        """``image`` (H, W, 3) uint8, ``mask`` (coloured like ``ssgan generate``'s mask PNGs) and
        ``labels`` (H, W) uint8 class indices of a render."""
        return {"image": V.to_uint8(out.rgb)[0], "mask": V.colorize(out.seg, self.colors)[0],
                "labels": out.seg.argmax(1)[0].to(torch.uint8).cpu().numpy()}

    @staticmethod
    def change(before: Synthesis, after: Synthesis, classes: Sequence[int]) -> dict[str, Any]:
        """:func:`ssgan.edit.editing.change` of one edit (heat map, region, inside/outside means)."""
        return E.change(before, after, classes)

    # ----- inversion ----------------------------------------------------------------------
    def invert(self, image: torch.Tensor, steps: int,
               callback: Callable[[int, torch.Tensor, torch.Tensor], Any] | None = None) -> torch.Tensor:
        """Compact W+ (1, n_latent, D) of ``image`` (1, 3, S, S) in [−1, 1]: the encoder's answer when
        the engine has one, else :func:`ssgan.edit.inversion.invert_latents` (official defaults but
        ``steps``; the mean latent computed once)."""
        if self.encoder is not None:
            with torch.no_grad():
                latent = self.encoder(image.to(self.device))
            if callback is not None:
                callback(steps, torch.zeros(1), torch.zeros(1))
            return latent
        cfg = I.InversionConfig(steps=int(steps))  # eager: compiled, it did not pay (performance.md)
        with self._lock:
            if self._inversion_mean is None:
                self._inversion_mean = E.mean_w(self.G, cfg.seed, cfg.mean_samples)
            mean = self._inversion_mean
        return I.invert_latents(self.G, image.to(self.device), None, None, cfg, mean, callback=callback)
