"""Training (docs/training.md).

``loop`` (the loop: ``python train.py`` and ``ssgan train``), ``spec`` (its command line and every
run default: ``RunSpec``), ``options`` (a training option declared once: a dataclass field with its
default, help and flag), ``state`` (networks, optimisers, step, RNGs and the checkpoint schema:
``TrainState``), ``outputs`` (what follows a step: logs, samples, checkpoints, metrics, stop
requests: ``RunOutputs``), ``steps`` (the four optimisation steps, G-EMA, optimisers, precision),
``losses``, ``rng`` (seeding and RNG capture), ``rundir`` (stats.jsonl, checkpoint files, sample
grids), ``metrics_hook`` (metrics during training), ``plot`` (curves.png, ``python -m
ssgan.train.plot``), ``tensorboard``.

Layer 7 of ``LAYERS`` (tests/test_layout.py): may import kernels, distributed, jsonl, model,
classes, checkpoint, provenance, visualize, cliargs, data, metrics.
"""
