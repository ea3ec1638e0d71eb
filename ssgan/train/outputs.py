"""What happens after each training step: :class:`RunOutputs` logs (``stats.jsonl``, curves,
TensorBoard, the progress bar), writes sample grids and checkpoints, evaluates metrics, checks for
non-finite values and honours stop requests (:class:`StopRequest`), each at its interval, in one
method: :meth:`RunOutputs.after_step`.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Any

import torch
from tqdm import tqdm

from ssgan import visualize as V
from ssgan.distributed import DistInfo, all_reduce_mean, any_rank
from ssgan.jsonl import JsonlLogger
from ssgan.train import steps as T
from ssgan.train.metrics_hook import TrainingMetrics, default_metrics
from ssgan.train.plot import CurveWriter
from ssgan.train.rundir import (
    checkpoint_path,
    latest_checkpoint,
    peak_memory_mb,
    rotate_checkpoints,
    write_samples,
)
from ssgan.train.spec import RunSpec, TrainError
from ssgan.train.state import Say, TrainState
from ssgan.train.tensorboard import TensorBoardLog, TensorBoardMissing


class NonFiniteError(Exception):
    """A loss term or a parameter became NaN/inf; main() prints it and returns 1."""


class StopRequest:
    """SIGTERM (what schedulers and torchrun send before stopping a job) and Ctrl-C (SIGINT): the
    first one asks the run to stop after the current step (during a metrics evaluation: after it and
    the next step), write a checkpoint and exit 0. A second
    one, more than :attr:`DUPLICATE_WINDOW` seconds after the first, ends the process at once (exit
    128 + the signal number, no checkpoint): a watcher thread reads the signals as they arrive
    (``signal.set_wakeup_fd``), so this works even while the main thread waits inside a collective.
    Signals within the window are the same request: a terminal's Ctrl-C reaches torchrun and its
    workers and torchrun forwards it; Slurm signals every process of a job.

    Under torchrun the ranks agree after every step (:meth:`agree`, one tiny gloo all-reduce), so
    all of them stop at the same step and a checkpoint is written within one step of the signal."""

    DUPLICATE_WINDOW = 1.0
    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, info: DistInfo):
        self.info = info
        self.requested = False
        self._old: dict[int, Any] = {}
        self._old_wakeup = -1
        self._pipe: tuple[int, int] | None = None
        self._thread: threading.Thread | None = None

    def _handle(self, signum: int, frame: Any) -> None:  # main thread, between Python instructions
        if not self.requested:
            self.requested = True
            print(f"\n{signal.Signals(signum).name}: finishing this step, writing a checkpoint and exiting "
                  f"(send it again to abort at once)", file=sys.stderr)

    def _watch(self, fd: int) -> None:  # watcher thread: sees every signal as it arrives
        first = None
        while data := os.read(fd, 64):
            for signum in data:
                if signum not in self.SIGNALS:
                    continue
                now = time.monotonic()
                if first is None:
                    first = now
                elif now - first > self.DUPLICATE_WINDOW:
                    os.write(2, f"\n{signal.Signals(signum).name} again: aborting, no checkpoint\n".encode())
                    os._exit(128 + signum)

    def install(self) -> None:
        """Handle SIGINT and SIGTERM (main thread only; elsewhere a no-op)."""
        if threading.current_thread() is not threading.main_thread():
            return
        r, w = os.pipe()
        os.set_blocking(w, False)
        self._pipe = (r, w)
        self._old_wakeup = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        for sig in self.SIGNALS:
            self._old[sig] = signal.signal(sig, self._handle)
        self._thread = threading.Thread(target=self._watch, args=(r,), name="ssgan-stop-watch", daemon=True)
        self._thread.start()

    def restore(self) -> None:
        """Put back the handlers that were there before :meth:`install`."""
        if self._pipe is None:
            return
        for sig, old in self._old.items():
            signal.signal(sig, old)
        signal.set_wakeup_fd(self._old_wakeup)
        r, w = self._pipe
        os.close(w)  # the watcher reads end-of-file and returns
        if self._thread is not None:
            self._thread.join(timeout=5)
        os.close(r)
        self._old, self._pipe, self._thread = {}, None, None

    def agree(self) -> bool:
        """All ranks' requests, OR-ed (a collective: every rank calls it after every step)."""
        self.requested = any_rank(self.requested)
        return self.requested


class RunOutputs:
    """The run folder's writers and the per-step bookkeeping around :class:`TrainState`; use as a
    context manager (closes the writers and restores the signal handler)."""

    def __init__(self, spec: RunSpec, state: TrainState, info: DistInfo, say: Say):
        self.spec, self.info, self.say = spec, info, say
        run, device, out, main = state.run, info.device, spec.outdir, info.is_main
        assert out is not None
        start = state.step
        self.sample_z = torch.randn(spec.count, run.cfg.style_dim,
                                    generator=torch.Generator().manual_seed(spec.seed)).to(device)
        self.logger = JsonlLogger(out / "stats.jsonl", resume_step=start) if main else None
        self.curves = CurveWriter(out) if main else None  # out/curves.png, redrawn at log steps
        try:
            self.tb = TensorBoardLog(out) if spec.tensorboard and main else None
        except TensorBoardMissing as e:
            raise TrainError(str(e)) from None
        self.meta = {"args": spec.to_meta(), "train": run.tc.to_dict(), "world_size": info.world_size,
                     "global_batch": spec.batch, "seed": spec.seed, "classes": run.classes.to_meta()}
        names = spec.metrics or default_metrics(device, spec.inception, run.use_seg, run.cfg.semantic)
        self.metrics = None if names == "none" else TrainingMetrics(
            names, spec.metrics_every, out, state.G_ema, run.dataset, device, 4 * spec.per_rank,
            inception=spec.inception, seed=spec.seed, resume_step=start, is_main=main, say=tqdm.write,
            meta=self.meta)  # best-<metric> checkpoints carry the same metadata
        self.last_good = latest_checkpoint(spec.ckpt_dir)
        self.stop = StopRequest(info)
        self.stop.install()
        arch = "" if run.cfg.semantic else f" ({run.cfg.arch})"
        say(f"training {run.config_name} config{' + changes' if run.changed else ''}{arch} at "
            f"{run.cfg.size}px, "
            f"{run.cfg.seg_dim} classes ({', '.join(run.classes.names)}), on {device} x{info.world_size}, "
            f"global batch {spec.batch}, steps {start}..{spec.steps}, R1 γ {run.tc.r1_img:g} / "
            f"{run.tc.r1_seg:g}, EMA ramp-up {run.tc.ema_rampup:g}, {state.fwd} -> {out}")
        self.bar = tqdm(total=spec.steps, initial=start, disable=not main, unit="step", dynamic_ncols=True)
        self.t_last, self.step_last = time.perf_counter(), start

    def __enter__(self) -> RunOutputs:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def after_step(self, state: TrainState) -> bool:
        """Everything due after ``state.step`` was completed, in this order: log, samples, the
        ranks' agreement on stopping, checkpoint, metrics (skipped when stopping early, to exit
        soon). True: stop now (a checkpoint was written)."""
        spec, step = self.spec, state.step
        last = step == spec.steps
        self.bar.update(1)
        if step % spec.log_every == 0 or last:
            self.log(state)
        if self.info.is_main and (step % spec.sample_every == 0 or last):
            self.write_samples(state)
        stop = self.stop.agree()
        if step % spec.ckpt_every == 0 or last or stop:
            self.save(state)
        if self.metrics is not None and (last or not stop):
            self.metrics.maybe_evaluate(step, spec.batch, last)
        if stop:
            self.say(f"stopped at step {step}; checkpoint {self.last_good}; the same command continues "
                     f"the run")
        return stop

    def log(self, state: TrainState) -> None:
        """stats.jsonl, curves, TensorBoard and the bar (a collective: the loss means over ranks)."""
        spec, step = self.spec, state.step
        values = all_reduce_mean(torch.stack([state.losses[k].float() for k in T.LOSS_KEYS])).tolist()
        bad = state.tracker.first_bad(reduce_min=True)
        if bad is not None:
            raise self.non_finite(bad)
        now = time.perf_counter()
        kimg_delta = (step - self.step_last) * spec.batch / 1000
        rec = {"step": step, "kimg": step * spec.batch / 1000,
               **{k: v for k, v in zip(T.LOSS_KEYS, values, strict=True)},
               "sec_per_kimg": (now - self.t_last) / kimg_delta,
               "peak_mem_mb": peak_memory_mb(self.info.device)}
        if state.fwd.compile:  # must stay constant after the first step: no recompiles
            rec["compiled_graphs"] = T.compiled_graphs()
        self.t_last, self.step_last = now, step
        if self.logger is not None and self.curves is not None:
            self.logger.log(rec)
            self.curves.update()
        if self.tb is not None:
            self.tb.scalars(rec)
        self.bar.set_postfix_str(f"kimg {rec['kimg']:.2f} d {rec['d']:.3f} g {rec['g']:.3f} "
                                 f"mask {rec['mask']:.3f} {rec['sec_per_kimg']:.0f} s/kimg")

    def write_samples(self, state: TrainState) -> None:
        path = self.spec.outdir / "samples" / f"{state.step:07d}.png"
        classes = state.run.classes
        png = write_samples(state.G_ema, self.sample_z, path, colors=V.palette(classes.k, classes.colors),
                            watermark=not self.spec.no_watermark, key_id=self.spec.watermark_key)
        if self.tb is not None:
            self.tb.image(png, state.step)

    def save(self, state: TrainState) -> None:
        """A checkpoint of ``state`` (all ranks call it), unless something became non-finite."""
        bad = state.tracker.first_bad(reduce_min=True)
        if bad is not None or not T.params_finite(state.G, state.D, state.G_ema):
            raise self.non_finite(bad)
        path = state.write_checkpoint(checkpoint_path(self.spec.ckpt_dir, state.step), self.meta)
        if path is not None:
            rotate_checkpoints(self.spec.ckpt_dir, self.spec.keep)
            self.last_good = path

    def non_finite(self, bad: tuple[int, list[str]] | None) -> NonFiniteError:
        where = (f"loss term(s) {', '.join(bad[1])} became non-finite at step {bad[0]}" if bad
                 else "a parameter became non-finite")
        resume = (f"the last good checkpoint is {self.last_good} (continue from it with --resume, "
                  f"e.g. with a lower --lr)" if self.last_good else "no checkpoint was written before it")
        return NonFiniteError(f"{where}; stopped, {resume}")

    def close(self) -> None:
        self.bar.close()
        if self.logger is not None and self.curves is not None:
            self.logger.close()
            self.curves.update(final=True)
        if self.tb is not None:
            self.tb.close()
        if self.metrics is not None:
            self.metrics.close()
        self.stop.restore()
