"""``ssgan serve``: an offline region editor in the browser over a documented JSON API.

Bottom up: ``errors`` (:class:`ClientError`, the one error answered as the client's fault),
``engine`` (the generator, the edits and the per-class render cache), ``session`` (per-tab state:
history, reference, inversion job), ``editor`` (the editor's operations without HTTP: sample,
reference, the edits, undo/redo, open a latent, invert an upload, downloads), ``routes`` (one
function per ``/api/…`` route and the exception handlers), ``app`` (the Starlette app: routes,
handlers, security headers), ``commands`` (the command line: ``ssgan serve`` and
``python -m ssgan.serve``), ``static/`` (the page: HTML, JS and CSS shipped in the package; no CDN,
web font or analytics request).

Layer 8 of ``LAYERS`` (tests/test_layout.py): may import kernels, distributed, jsonl, model,
classes, checkpoint, provenance, visualize, cliargs, data, metrics, train, edit.
"""
