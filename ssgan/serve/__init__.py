"""``ssgan serve``: an offline region editor in the browser over a documented JSON API.

``engine`` (the generator, the edits and the per-class render cache), ``session`` (per-tab state:
history, reference, inversion job), ``app`` (the Starlette app: the page and ``/api/…``),
``commands`` (the command line: ``ssgan serve`` and ``python -m ssgan.serve``), ``static/`` (the
page: HTML, JS and CSS shipped in the package; no CDN, web font or analytics request).

Layer 8 of ``LAYERS`` (tests/test_layout.py): may import kernels, distributed, jsonl, model,
classes, checkpoint, visualize, cliargs, data, metrics, train, edit.
"""
