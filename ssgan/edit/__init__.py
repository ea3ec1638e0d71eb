"""Editing generated faces and real photographs (docs/editing.md).

``editing`` (latent sampling, mixing classes' codes, interpolation, the composition), ``photos``
(reading photographs and their labels), ``perceptual`` (MS-SSIM, LPIPS-VGG), ``inversion``
(optimisation inversion and pivotal tuning), ``directions`` (attribute directions restricted to
classes), ``locality`` (the edit locality: how much of an edit's change lands inside the edited
classes), ``encoder`` / ``encoder_train`` (the latent encoder), ``sweep`` (each class's codes swept
in turn, for ``ssgan video``), ``commands`` / ``encoder_commands`` / ``video_commands`` (their
``ssgan`` subcommands).

Layer 7 of ``LAYERS`` (tests/test_layout.py): may import kernels, distributed, jsonl, model,
classes, checkpoint, provenance, visualize, cliargs, data, metrics.
"""
