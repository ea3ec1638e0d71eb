"""Training curves: ``OUT/curves.png``, redrawn by ``train.py`` at its log steps, and

    ssgan plot RUN_DIR [RUN_DIR ...] [--out curves.png] [--smooth 0.6]   (or python -m ssgan.train.plot)

to overlay runs (legend: the run folders' names). Reads ``RUN_DIR/stats.jsonl`` (one record per
log step: the loss terms of ``ssgan.train.steps.LOSS_KEYS``, ``sec_per_kimg``, against ``kimg``)
and, when it exists, ``RUN_DIR/metrics.jsonl`` (one record per evaluation:
``{"step", "kimg", "metric", "value", "seconds"}``; one panel per metric name).

Panels (x axis: kimg, thousands of real images shown to D): D and G losses; D's mean logits on
real and fake images; R1 (∥∇D∥² on real images and masks); the path-length penalty; the batch
and running-mean path lengths; the mask loss (fine vs coarse masks); seconds per kimg; the
metrics. Noisy terms are drawn raw (thin, faint) under a debiased exponential moving average
(:func:`ema_smooth`); panels whose values span more than a decade use a log scale.

Drawing uses matplotlib's Agg canvas directly (no pyplot state, nothing shown on screen) and
writes through a temporary file and a rename, so a reader never sees a half-written PNG.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ssgan import cliargs as A
from ssgan.provenance import ALGORITHMIC, Provenance, save_image, software

STATS = "stats.jsonl"
METRICS = "metrics.jsonl"
CURVES = "curves.png"
DEFAULT_SMOOTH = 0.6


class PlotError(Exception):
    """A run folder that cannot be plotted; reported as one line."""


@dataclass(frozen=True)
class Panel:
    """One subplot: ``series`` are (stats key, legend label); ``log``: log scale when the values
    are positive and span more than a decade."""

    title: str
    series: tuple[tuple[str, str], ...]
    ylabel: str
    log: bool = False
    smooth: bool = True


PANELS: tuple[Panel, ...] = (
    Panel("D and G losses", (("d", "D"), ("g", "G")), "softplus loss"),
    Panel("D logits, real vs fake", (("real_score", "real"), ("fake_score", "fake")), "mean D output"),
    Panel("R1 penalty", (("r1_img", "image"), ("r1_seg", "mask")), "‖∇D(real)‖²", log=True),
    Panel("Path-length penalty", (("path", "penalty"),), "(‖Jᵀy‖ − a)²", log=True),
    Panel("Path length", (("path_length", "batch"), ("mean_path_length", "running mean a")),
          "‖Jᵀy‖"),
    Panel("Mask loss (fine vs coarse)", (("mask", "mask"),), "loss", log=True),
    Panel("Speed", (("sec_per_kimg", "s/kimg"),), "seconds per kimg", log=True, smooth=False),
)


@dataclass
class Run:
    """A run folder's records: ``stats`` (stats.jsonl) and ``metrics`` (metrics.jsonl, may be [])."""

    name: str
    stats: list[dict[str, Any]]
    metrics: list[dict[str, Any]] = field(default_factory=list)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of ``path``, one per line; a torn or malformed line (a run still writing)
    is skipped."""
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            records.append(rec)
    return records


def load_run(folder: str | os.PathLike, name: str | None = None) -> Run:
    """Read ``folder/stats.jsonl`` (required) and ``folder/metrics.jsonl`` (optional)."""
    folder = Path(folder)
    stats_path = folder / STATS
    if not stats_path.is_file():
        raise PlotError(f"{stats_path} not found: pass a run folder written by train.py (its --outdir)")
    stats = [r for r in read_jsonl(stats_path) if "kimg" in r]
    metrics_path = folder / METRICS
    metrics = read_jsonl(metrics_path) if metrics_path.is_file() else []
    metrics = [r for r in metrics if {"kimg", "metric", "value"} <= r.keys()]
    return Run(name or folder.resolve().name, stats, metrics)


def ema_smooth(values: Sequence[float], weight: float) -> list[float]:
    """Debiased exponential moving average (TensorBoard's smoothing):
    m_t = w·m_{t−1} + (1 − w)·v_t, m_0 = 0, shown as m_t / (1 − wᵗ). ``weight`` 0: the raw values.
    Non-finite values are passed through without entering the average."""
    if not 0 <= weight < 1:
        raise ValueError(f"smoothing weight must lie in [0, 1), got {weight}")
    out, m, debias = [], 0.0, 1.0
    for v in values:
        if not math.isfinite(v):
            out.append(v)
            continue
        m = weight * m + (1 - weight) * v
        debias *= weight
        out.append(m / (1 - debias))
    return out


def _series(records: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    pts = [(float(r["kimg"]), float(r[key])) for r in records if isinstance(r.get(key), int | float)]
    return [p[0] for p in pts], [p[1] for p in pts]


def _use_log(ys: Sequence[float]) -> bool:
    finite = [y for y in ys if math.isfinite(y)]
    return bool(finite) and min(finite) > 0 and max(finite) / min(finite) > 10


def _unique_names(runs: Sequence[Run]) -> list[str]:
    names = [r.name for r in runs]
    return names if len(set(names)) == len(names) else [f"{n} ({i + 1})" for i, n in enumerate(names)]


MAX_POINTS = 2000  # per line: longer series are thinned (after smoothing) to keep redraws cheap


def _thin(xs: list[float], ys: list[float]) -> tuple[list[float], list[float]]:
    stride = max(1, math.ceil(len(xs) / MAX_POINTS))
    if stride == 1:
        return xs, ys
    return xs[::stride] + xs[-1:], ys[::stride] + ys[-1:]


def _latest_values(ax: Any, run: Run) -> None:
    """The last record's values as a small table (the free slot after the last panel)."""
    last = run.stats[-1]
    keys = [k for p in PANELS for k, _ in p.series] + ["peak_mem_mb"]
    rows = [f"{k:<17s}{float(last[k]):>11.4g}" for k in keys if isinstance(last.get(k), int | float)]
    for m in sorted({m["metric"] for m in run.metrics}):
        rec = [r for r in run.metrics if r["metric"] == m][-1]
        rows.append(f"{m:<17s}{float(rec['value']):>11.4g}  @ {float(rec['kimg']):g} kimg")
    ax.axis("off")
    ax.set_title(f"latest (step {last.get('step', '?')})", fontsize=10)
    ax.text(0.02, 0.98, "\n".join(rows), va="top", ha="left", family="monospace", fontsize=8,
            transform=ax.transAxes)


def figure(runs: Sequence[Run], smooth: float = DEFAULT_SMOOTH, title: str | None = None) -> Any:
    """A matplotlib ``Figure`` with the panels for ``runs`` (one run: a colour per series and the
    latest values in a free slot; several: a colour per run, named in a figure legend, and a line
    style per series)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    if not runs:
        raise ValueError("draw() needs at least one run")
    ema_smooth([], smooth)  # validates the weight
    metric_names = sorted({m["metric"] for r in runs for m in r.metrics})
    panels = list(PANELS) + [Panel(f"metric: {n}", ((n, n),), n, smooth=False) for n in metric_names]
    ncol = 4
    nrow = math.ceil(len(panels) / ncol)
    fig = Figure(figsize=(4.2 * ncol, 3.1 * nrow + 0.6), dpi=90)
    FigureCanvasAgg(fig)
    palette = [f"C{i}" for i in range(10)]
    styles = ["-", "--", ":", "-."]
    names = _unique_names(runs)
    several = len(runs) > 1
    for n, panel in enumerate(panels):
        ax = fig.add_subplot(nrow, ncol, n + 1)
        ax.set_title(panel.title, fontsize=10)
        ax.set_xlabel("kimg", fontsize=8)
        ax.set_ylabel(panel.ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3, linewidth=0.5)
        is_metric = n >= len(PANELS)
        all_y: list[float] = []
        drawn = []
        for r, run in enumerate(runs):
            for s, (key, label) in enumerate(panel.series):
                if is_metric:
                    recs = [{"kimg": m["kimg"], key: m["value"]} for m in run.metrics if m["metric"] == key]
                else:
                    recs = run.stats
                xs, ys = _series(recs, key)
                if not ys or (not is_metric and all(y == 0 for y in ys)):  # never logged / unused term
                    continue
                color = palette[r % 10] if several else palette[s % 10]
                style = styles[s % len(styles)] if several else "-"
                all_y += ys
                if is_metric:
                    ax.plot(xs, ys, style, color=color, marker="o", markersize=3, linewidth=1.2)
                elif panel.smooth and smooth > 0 and len(ys) > 2:
                    ax.plot(*_thin(xs, ys), style, color=color, alpha=0.3, linewidth=0.7)
                    ax.plot(*_thin(xs, ema_smooth(ys, smooth)), style, color=color, linewidth=1.4)
                else:
                    ax.plot(*_thin(xs, ys), style, color=color, linewidth=1.2)
                drawn.append((label, color, style))
        if not drawn:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes,
                    color="0.5", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        if panel.log and _use_log(all_y):
            ax.set_yscale("log")
        first: dict[str, tuple[str, str]] = {}
        for label, color, style in drawn:
            first.setdefault(label, ("0.3" if several else color, style))
        if len(first) > 1:  # several runs: the series by line style (the runs' colours: figure legend)
            handles = [Line2D([], [], color=c, linestyle=st) for c, st in first.values()]
            ax.legend(handles, list(first), fontsize=7, loc="best", framealpha=0.7)
    if not several and runs[0].stats and len(panels) % ncol:
        _latest_values(fig.add_subplot(nrow, ncol, len(panels) + 1), runs[0])
    if several:
        fig.legend([Line2D([], [], color=palette[i % 10], linewidth=2) for i in range(len(runs))], names,
                   loc="upper right", ncol=min(len(runs), 6), fontsize=9, frameon=False)
    if title is None:
        last = runs[0].stats[-1] if len(runs) == 1 and runs[0].stats else None
        title = names[0] if not several else "runs"
        if last is not None:
            title += f": step {last.get('step', '?')}, {float(last['kimg']):g} kimg"
        if smooth > 0:
            title += f"  (faint: raw; solid: EMA-smoothed, weight {smooth:g})"
    fig.suptitle(title, x=0.01, ha="left", fontsize=11)
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.07 if nrow > 1 else 0.14,
                        top=1 - 0.75 / fig.get_figheight(), wspace=0.28, hspace=0.5)
    return fig


def draw(runs: Sequence[Run], path: str | os.PathLike, smooth: float = DEFAULT_SMOOTH,
         title: str | None = None) -> Path:
    """:func:`figure` written as a PNG (with its provenance record: a figure drawn from numbers)
    through a temporary file and a rename; returns the path."""
    fig = figure(runs, smooth, title)
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3]
    return save_image(rgb, path, Provenance(ALGORITHMIC, "plot", software(), None, False, 0))


class CurveWriter:
    """Redraws ``folder/curves.png`` from ``folder``'s records at a training run's log steps.

    Cost control: a redraw is skipped while the time since the previous one is less than its
    duration / ``budget`` (so drawing takes at most ~``budget`` of the run's time on a fast
    machine with frequent logging); :meth:`update` with ``final=True`` always draws. A failure to
    draw never stops training: it is reported once on stderr and drawing is switched off."""

    def __init__(self, folder: str | os.PathLike, budget: float = 0.05, smooth: float = DEFAULT_SMOOTH):
        self.folder, self.path = Path(folder), Path(folder) / CURVES
        self.budget, self.smooth = budget, smooth
        self.enabled = True
        self.draws = 0
        self.seconds = 0.0  # total time spent drawing
        self._next = 0.0  # perf_counter time before which a non-final redraw is skipped

    def update(self, final: bool = False) -> bool:
        """Redraw if due (or ``final``); returns whether the PNG was written."""
        now = time.perf_counter()
        if not self.enabled or (not final and now < self._next):
            return False
        try:
            draw([load_run(self.folder)], self.path, self.smooth)
        except Exception as e:  # a plot must never end a training run
            self.enabled = False
            print(f"warning: could not draw {self.path} ({type(e).__name__}: {e}); training goes on "
                  f"without curves (draw them later with: ssgan plot {self.folder})",
                  file=sys.stderr)
            return False
        took = time.perf_counter() - now
        self.draws += 1
        self.seconds += took
        self._next = now + took / self.budget
        return True


DESCRIPTION = __doc__.split("\n\n")[0]

#: Errors of this command that are bad input, reported as one line (see ssgan.cli).
ERRORS: tuple[type[Exception], ...] = (PlotError,)


def cmd_plot(args: argparse.Namespace) -> None:
    if not 0 <= args.smooth < 1:
        raise A.CLIError(f"--smooth must lie in [0, 1), got {args.smooth}")
    runs = [load_run(r) for r in args.runs]
    empty = [r for r, run in zip(args.runs, runs, strict=True) if not run.stats]
    if empty:
        raise PlotError(f"{Path(empty[0]) / STATS} holds no records yet")
    print(f"wrote {draw(runs, args.out, args.smooth, args.title)}")


def add_arguments(q: argparse.ArgumentParser) -> None:
    """The arguments of ``ssgan plot`` (and of ``python -m ssgan.train.plot``)."""
    q.add_argument("runs", nargs="+", metavar="RUN_DIR", help="train.py run folders (with stats.jsonl)")
    A.add_out(q, "PNG to write", default=CURVES)
    q.add_argument("--smooth", type=float, default=DEFAULT_SMOOTH,
                   help="EMA weight in [0, 1) for the smoothed lines (0: raw values only)")
    q.add_argument("--title", default=None, help="figure title (default: none)")
    q.set_defaults(func=cmd_plot)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``plot`` (see :mod:`ssgan.cli`)."""
    add_arguments(sub.add_parser("plot", help="training curves of one or more runs, overlaid",
                                 description=DESCRIPTION))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ssgan.train.plot RUN_DIR …``: the same as ``ssgan plot RUN_DIR …``."""
    return A.standalone("python -m ssgan.train.plot", DESCRIPTION, add_arguments, argv, ERRORS)


if __name__ == "__main__":
    sys.exit(main())
