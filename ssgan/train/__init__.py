"""Training (docs/training.md).

``loop`` (the command line and the loop: ``python train.py`` and ``ssgan train``), ``steps`` (the
four optimisation steps, G-EMA, optimisers, precision), ``losses``, ``rng`` (seeding and RNG
capture), ``rundir`` (stats.jsonl, checkpoint files, sample grids), ``metrics_hook`` (metrics
during training), ``plot`` (curves.png, ``python -m ssgan.train.plot``), ``tensorboard``.
"""
