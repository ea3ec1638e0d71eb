"""What every metric shares: options, generator sampling, real-data passes, statistics caching.

One pass over ``n`` generated images (or ``n`` real items) collects, per image, only what the
requested metrics need (:class:`Probes`):

* ``features``: the FID Inception's 2048-d pool3 features (float32);
* ``logits``: its 1008 logits without bias (Inception Score);
* ``areas``: the class-area vector a ∈ R^K, a_k = 100 · (pixels of class k) / (H·W), of the
  fine mask (generated: argmax of the segmentation logits; real: the label map);
* ``agreement``: per class, the pixel counts of intersection and union of the fine mask and the
  coarse mask (argmax of the coarse mask, nearest-upsampled to the image size).

Generated image ``i`` belongs to batch ``b = i // batch``; its z comes from a CPU generator
seeded with s_b = 1 000 003·seed + 2b and its noise from the global RNG seeded with s_b + 1 inside
``torch.random.fork_rng`` (the caller's RNG state is untouched). Under torch.distributed, batch
``b`` runs on rank ``b % world`` and real item ``i`` on rank ``i % world``; every rank gets all
probes (``all_gather_object``), so the result does not depend on the world size.

Real statistics are cached as ``.npz`` (atomic write: temp file, then rename) under
``cache_dir`` (default ``~/.cache/ssgan``), keyed by the dataset's identity (file names, sizes
and modification times; or the built-in dataset's parameters), the resolution, the class count,
the number of items, the extractor's weights (sha256) and the pre-processing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from ssgan.distributed import gather_objects
from ssgan.metrics.inception import FIDInceptionV3
from ssgan.metrics.segmentation import class_areas, mask_agreement_counts
from ssgan.model.generator import SemanticGenerator

PREPROCESSING = "uint8, nv-bilinear-299, (x-128)/128; v1"
PROBES = ("features", "logits", "areas", "agreement")


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ssgan"


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Images as uint8 (N, 3, H, W): uint8 input is returned as is, float input in [−1, 1]
    becomes clamp(x · 127.5 + 128, 0, 255) truncated (NVlabs; a uint8 image that was scaled by
    x/127.5 − 1 comes back unchanged)."""
    if images.dtype == torch.uint8:
        return images
    return (images.float() * 127.5 + 128).clamp_(0, 255).to(torch.uint8)


@dataclass
class Probes:
    """What one pass collected (see the module doc); absent probes are None."""

    n: int = 0
    features: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    areas: torch.Tensor | None = None
    agreement: torch.Tensor | None = None

    @staticmethod
    def merge(parts: list[dict[str, torch.Tensor]]) -> Probes:
        """Concatenate per-batch dicts (``agreement`` counts are summed)."""
        out = Probes(n=sum(int(p["n"]) for p in parts))
        for name in PROBES:
            chunks = [p[name] for p in parts if name in p]
            if chunks:
                setattr(out, name, torch.stack(chunks).sum(0) if name == "agreement" else torch.cat(chunks))
        return out


@contextlib.contextmanager
def allow_tf32(enabled: bool) -> Iterator[None]:
    """TF32 matmuls and convolutions inside the block (CUDA fast path), restored afterwards."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _dist() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


@dataclass
class MetricOptions:
    """How to evaluate: the generator (eval mode, e.g. G-EMA), the real data, the extractor.

    ``fast``: on CUDA, generate under bf16 autocast (the Triton ops are CUDA's default backend)
    and extract features with TF32 (default: on for CUDA). ``workers``: loader processes for the
    real data (default 0 on CPU, min(8, cpus) on CUDA)."""

    G: SemanticGenerator
    dataset: Dataset | None = None
    extractor: FIDInceptionV3 | None = None
    extractor_info: dict | None = None
    device: torch.device = torch.device("cpu")
    batch: int = 32
    truncation: float = 1.0
    seed: int = 0
    cache_dir: Path | None = None
    progress: bool = True
    fast: bool | None = None
    workers: int | None = None

    def __post_init__(self) -> None:
        self.device = torch.device(self.device)
        if self.fast is None:
            self.fast = self.device.type == "cuda"
        self.fast = bool(self.fast) and self.device.type == "cuda"
        self._mean_w: torch.Tensor | None = None

    # ----- helpers shared by both passes ------------------------------------------------------
    def _extract(self, images: torch.Tensor, want: set[str]) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        if want & {"features", "logits"}:
            if self.extractor is None:
                raise RuntimeError("an Inception metric was asked for without an extractor")
            with torch.no_grad(), allow_tf32(bool(self.fast)):
                feats = self.extractor(images.to(self.device))
                if "logits" in want:
                    out["logits"] = self.extractor.logits(feats).float().cpu()
            out["features"] = feats.float().cpu()
        return out

    def _bar(self, total: int, desc: str) -> tqdm:
        return tqdm(total=total, desc=desc, unit="img", dynamic_ncols=True, leave=False,
                    disable=not self.progress or _dist()[0] != 0)

    # ----- generated images -----------------------------------------------------------------------
    @torch.no_grad()
    def generated(self, n: int, want: set[str]) -> Probes:
        """Probes of ``n`` generated images (see the module doc for the seeding)."""
        G, cfg = self.G, self.G.config
        rank, world = _dist()
        if self.truncation < 1 and self._mean_w is None:
            gen = torch.Generator(self.device).manual_seed(self.seed)
            self._mean_w = G.mean_latent(4096, generator=gen)
        batches = range((n + self.batch - 1) // self.batch)
        parts: list[dict[str, torch.Tensor]] = []
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), self._bar(n, "generate") as bar:
            for b in batches:
                size = min(self.batch, n - b * self.batch)
                if b % world == rank:
                    batch_seed = self.seed * 1_000_003 + 2 * b
                    z = torch.randn(size, cfg.style_dim, generator=torch.Generator().manual_seed(batch_seed))
                    z = z.to(self.device)
                    torch.manual_seed(batch_seed + 1)  # the render net's noise: not z's stream
                    amp = torch.autocast("cuda", torch.bfloat16) if self.fast else contextlib.nullcontext()
                    with amp:
                        out = G.synthesize(G.layout([z], truncation=self.truncation,
                                                    truncation_latent=self._mean_w))
                    part = {"n": torch.tensor(size), **self._extract(to_uint8(out.rgb), want)}
                    fine = out.seg.argmax(1)
                    if "areas" in want:
                        part["areas"] = class_areas(fine, cfg.seg_dim).cpu()
                    if "agreement" in want:
                        part["agreement"] = mask_agreement_counts(fine, out.coarse.argmax(1), cfg.seg_dim)
                    parts.append(part)
                bar.update(size)
        return Probes.merge([p for ps in gather_objects(parts) for p in ps])

    # ----- real data ----------------------------------------------------------------------------
    @torch.no_grad()
    def real(self, n: int, want: set[str]) -> Probes:
        """Probes of the first ``n`` real items, from the cache when present (then written)."""
        want = want & {"features", "areas"}
        path = self._cache_path(n, want)
        if path is not None and path.is_file():
            try:
                with np.load(path) as z:
                    return Probes(n=n, **{k: torch.from_numpy(z[k]) for k in want})
            except (OSError, ValueError, KeyError):
                pass  # a damaged cache file is recomputed and replaced
        rank, world = _dist()
        workers = self.workers if self.workers is not None else (
            0 if self.device.type == "cpu" else min(8, os.cpu_count() or 1))
        mine = Subset(self.dataset, list(range(rank, n, world)))
        loader = DataLoader(mine, batch_size=self.batch, num_workers=workers)
        parts: list[dict[str, torch.Tensor]] = []
        with torch.random.fork_rng(devices=[]), self._bar(n, "real data") as bar:
            for item in loader:
                images = item["image"]
                part = {"n": torch.tensor(images.shape[0]), **self._extract(to_uint8(images), want)}
                if "areas" in want:
                    part["areas"] = class_areas(item["label"], self.G.config.seg_dim)
                parts.append(part)
                bar.update(images.shape[0] * world)
        probes = Probes.merge([p for ps in gather_objects(parts) for p in ps])
        if path is not None and rank == 0:
            save_npz_atomic(path, {k: getattr(probes, k).numpy() for k in want})
        return probes

    def _cache_path(self, n: int, want: set[str]) -> Path | None:
        if self.cache_dir is None or not want:
            return None
        data = dataset_fingerprint(self.dataset)
        if data is None:
            return None
        key = {"data": data, "size": self.G.config.size,
               "classes": self.G.config.seg_dim, "n": n, "probes": sorted(want),
               "extractor": (self.extractor_info or {}).get("sha256") if "features" in want else None,
               "preprocessing": PREPROCESSING}
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
        return Path(self.cache_dir) / f"real-{digest}.npz"


def dataset_fingerprint(dataset: Dataset) -> dict | None:
    """The identity of a dataset for the cache: the built-in dataset's parameters, or every
    file's name, size and modification time (ns) for a folder dataset; None (not cached) for
    other datasets (e.g. one decoded into memory)."""
    base = getattr(dataset, "dataset", dataset)  # a Subset
    if hasattr(base, "image_files"):
        files = list(base.image_files) + list(getattr(base, "label_files", None) or [])
        h = hashlib.sha256()
        for f in files:
            st = os.stat(f)
            h.update(f"{Path(f).resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return {"folder": str(Path(base.images_dir).resolve()), "files": h.hexdigest()}
    if hasattr(base, "render"):  # a built-in dataset: a pure function of its parameters
        kind = "faces" if hasattr(base, "attributes") else "synthetic"  # ProceduralFaces, SyntheticFaces
        return {kind: [base.size, base.seg_dim, base.seed]}
    return None


def save_npz_atomic(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write ``arrays`` to ``path`` (.npz) through a temporary file in the same folder + rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
