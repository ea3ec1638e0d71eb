"""Train SemanticStyleGAN.

    python train.py                                   # tiny preset, built-in data, a few CPU minutes
    python train.py --preset celeba-256 --data DIR --batch 32 --steps 150000
    torchrun --standalone --nproc_per_node=8 train.py --preset celeba-256 --data DIR --batch 32
    python train.py --outdir runs/tiny --steps 2000   # continue that run (--resume auto, the default)
    python train.py --init CelebAMask-HQ-512x512.pt --images metfaces/ --freeze-local --steps 2000
    python train.py --preset celeba-256 --data DIR --size 128 --seg-dim 8 --transparent 6,7  # any data

Model configuration: ``--preset`` (or a resumed / ``--init`` checkpoint's), then ``--config FILE``
(SSGANConfig fields as JSON), then ``DATA/classes.json`` or ``--class-names FILE`` (class names:
the class count and the transparent classes, see ``ssgan.classes``), then one flag per SSGANConfig
field (``--size``, ``--seg-dim``, ``--transparent``, ``--local-layers`` …;
``ssgan.model.config.add_config_flags``).
classes.json and a flag that disagree, or anything that differs from a resumed / ``--init``
checkpoint's configuration, is a one-line error. The class names go into the checkpoints.

The run reads top to bottom in :func:`train`: ``ssgan.train.spec.RunSpec.from_args`` parses and
checks the command line (and holds every run default), ``ssgan.train.state.TrainState`` (``new`` or
``resume``) builds the networks, optimisers, step and RNGs and advances them by one step
(``train_step``), and ``ssgan.train.outputs.RunOutputs.after_step`` does what is due after a step
(log, samples, checkpoint, metrics, stop requests). Below them: ``ssgan.train.steps`` (steps, EMA,
optimisers), ``ssgan.train.losses``, ``ssgan.data.loader`` (data order), ``ssgan.train.rng`` (RNG
capture), ``ssgan.distributed`` (DDP) and ``ssgan.train.rundir`` (logs, checkpoint rotation,
samples). One step ``i`` (0-based) is, as in the official script: D step; R1 when ``i % d_reg_every
== 0``; G step; path length when ``i % g_reg_every == 0``; EMA. The ``step`` in ``stats.jsonl`` and
in checkpoint names counts completed steps (step N is logged after index i = N − 1).

Outputs under ``--outdir`` (``--out``: its deprecated spelling): ``stats.jsonl``, ``curves.png``
(the curves of ``ssgan.train.plot``, redrawn at log steps while drawing stays under ~5 % of the
run's time, and at the end), ``samples/<step>.png`` (G-EMA on fixed latents: image | mask | coarse mask),
``checkpoints/<step>.safetensors`` (G, D, G-EMA, optimisers, step, every rank's RNG states, mean
path length and last loss values, ``ssgan.train.state``; the newest ``--keep`` are kept).

Reproducibility: the batch of step s depends only on (seed, s, global batch) (see
``ssgan.data.loader.StepBatchSampler``), all other randomness comes from seeded torch generators
whose states are checkpointed, so a resumed run reproduces an uninterrupted one exactly on CPU with
the same world size.

Reliability (docs/reliability.md): ``--resume auto`` (the default) continues from the newest
valid checkpoint in ``--outdir`` when there is one, so re-running the same command, or torchrun
restarting its workers (``--max-restarts``), continues the run; ``--resume never`` refuses a folder
with checkpoints, ``--resume PATH`` continues from that file. SIGTERM or Ctrl-C finishes the
current step, writes a checkpoint and exits 0; under torchrun the ranks agree after every step
(``ssgan.distributed.any_rank``: one small gloo all-reduce, no device sync), so the wait is one step
plus the checkpoint (torchrun sends SIGKILL after ``--shutdown-timeout``, default 30 s). A second
signal, more than a second later, aborts at once (``ssgan.train.outputs.StopRequest``). Non-
finite losses are tracked on the device every step without a host sync and checked at each log and
checkpoint step: the run then stops naming the first bad step and term, and no checkpoint is written
after it. DDP: gradients are all-reduced by hand after every backward (no DDP wrapper), so R1's and
path length's double backward need nothing special; rank 0 logs and saves.

Speed (``--compile``, ``--precision``; defaults: compiled bf16 on CUDA, eager fp32 on CPU): the D-
and G-step forwards (and so their backwards) run through ``torch.compile(fullgraph=True)`` under
bf16 autocast with fp32 weights and losses; R1 and path length (double backward) run the same
modules eagerly (see ``ssgan.train.steps.StepForwards``). Nothing in a step reads a value back to
the host; losses are read when logged.

Defaults that differ from the official script (see ``--help`` and docs/training.md): R1 weights scaled
with size²/batch except for the celeba presets (``ssgan.train.steps.r1_auto``), the G-EMA ramp-up
(``ssgan.train.steps.ema_beta``; ``--resume`` keeps the run's EMA schedule) and lr 0.004 for
``tiny``.

Image-only data (a folder without labels): D sees images only, no R1 on masks, no mask loss.
``--freeze-local`` (domain adaptation, as the official ``--freeze_local``): the local generators
(and the position embedding) stay fixed; the mapping network, the render net and D train.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import torch

from ssgan.checkpoint import CheckpointError, load_checkpoint
from ssgan.cliargs import CLIError
from ssgan.data import DatasetError
from ssgan.data.loader import make_step_loader
from ssgan.distributed import CollectiveError, DistInfo, cleanup_distributed, init_distributed
from ssgan.metrics import MetricError
from ssgan.train.outputs import NonFiniteError, RunOutputs
from ssgan.train.spec import RunSpec, TrainError
from ssgan.train.state import TrainState, info_say


def main(argv: Sequence[str] | None = None, parsed: argparse.Namespace | None = None) -> int:
    """``python train.py`` (``argv``, default ``sys.argv[1:]``) / ``ssgan train`` (``parsed``: its
    arguments, see ``ssgan.train.commands``): 0 done (or stopped on request), 1 a non-finite value
    or a failed collective (a lost rank or a timeout: torchrun's ``--max-restarts`` restarts), 2 a bad
    command line, run folder, dataset or checkpoint (one line ``ssgan: error: …`` on stderr,
    as every ``ssgan`` command)."""
    try:
        spec = RunSpec.from_args(argv) if parsed is None else RunSpec.from_namespace(parsed)
        info = init_distributed(spec.device)
    except (CLIError, TrainError, RuntimeError) as e:  # checked before any process group is set up
        return fail(e, 2)
    threads = torch.get_num_threads()
    if spec.threads is not None or info.device.type == "cpu":
        torch.set_num_threads(max(1, spec.threads or 1))
    try:
        return train(spec, info)
    except (TrainError, DatasetError, CheckpointError, MetricError) as e:
        return fail(e, 2)
    except (NonFiniteError, CollectiveError) as e:
        return fail(e, 1)
    except KeyboardInterrupt:
        print("interrupted (no checkpoint written)", file=sys.stderr)
        return 130
    finally:
        torch.set_num_threads(threads)
        cleanup_distributed()


def fail(error: Exception, status: int) -> int:
    """Print ``error`` as one line ``ssgan: error: …`` on stderr; return ``status``."""
    print(f"ssgan: error: {' '.join(str(error).split())}", file=sys.stderr)
    return status


def train(spec: RunSpec, info: DistInfo) -> int:
    """The run: state, data, then one step and what follows it, until ``--steps`` or a stop."""
    say = info_say(info)
    if spec.resume_path is not None:
        if spec.init:
            say(f"note: --init {spec.init} is not used: the run continues from {spec.resume_path}")
        state = TrainState.resume(spec, load_checkpoint(spec.resume_path), info, say)
    else:
        state = TrainState.new(spec, info, say)
    if state.step >= spec.steps:
        say(f"nothing to do: the run is at step {state.step} and --steps is {spec.steps}")
        return 0
    cuda = info.device.type == "cuda"
    batches = iter(make_step_loader(state.run.dataset, spec.batch, rank=info.rank, world_size=info.world_size,
                                    seed=spec.seed, start_step=state.step, hflip=spec.hflip,
                                    workers=spec.loader_workers(info.device.type == "cpu"),
                                    pin_memory=cuda))
    with RunOutputs(spec, state, info, say) as outputs:
        while state.step < spec.steps:
            state.train_step(next(batches))
            if outputs.after_step(state):  # a stop request: checkpoint written
                return 0
    say(f"done: {spec.steps} steps; newest checkpoint {outputs.last_good}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
