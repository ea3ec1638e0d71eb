"""ssgan.kernels: the model's hot ops, each a reference implementation and a Triton one.

Public ops (dispatching on :mod:`.backend`): :func:`grouped_mlp`, :func:`fuse`, :func:`bias_act`,
:func:`upfirdn2d`; plus :func:`modulated_weights` and :func:`fusion_weights`, the shared maths.

Every op's file reads in one order: the public entry point and its docstring, the reference
(``*_reference``, the mathematical truth, plain PyTorch), the Triton kernels, then the launchers
and the ``torch.library`` custom op(s) with their fake functions and autograd. The launch helpers
(layout, split counts, grids, autotuning) and the precision flags ``ACC`` / ``DOT`` / ``EMU`` are
shared: :mod:`.launch`. Names in every file: custom op ``ssgan::<op>`` is ``_<op>_op`` (its
backward op ``_<op>_backward_op``), run by ``_<op>_triton`` where the launcher is a function of its
own; its autograd is ``_<op>_setup`` (setup_context) and ``_<op>_grad`` (the backward formula).

Triton is optional: ``import ssgan`` and every op work without it (reference maths only).
The fallback rule, one for all ops (:func:`.backend.runs_triton`): the Triton kernels run only
where they can — Triton installed, a CUDA tensor or Triton's interpreter (``TRITON_INTERPRET=1``),
inputs the op's kernels cover. Elsewhere the default choice takes the reference maths silently,
and a forced ``triton`` (``SSGAN_BACKEND=triton``, :func:`set_backend`, :func:`use_backend`) raises
:class:`TritonUnavailable` naming the op and the reason.

Layer 0 of ``LAYERS`` (tests/test_layout.py): may import nothing of ssgan.
"""

from .backend import BACKENDS, TritonUnavailable, backend_for, interpreting, set_backend, use_backend
from .bias_act import bias_act, bias_act_reference
from .fusion import fuse, fuse_reference, fusion_weights
from .local_mlp import grouped_mlp, grouped_mlp_reference, modulated_weights
from .upfirdn2d import upfirdn2d, upfirdn2d_reference

__all__ = [
    "BACKENDS", "TritonUnavailable", "backend_for", "interpreting", "set_backend", "use_backend",
    "bias_act", "bias_act_reference",
    "fuse", "fuse_reference", "fusion_weights",
    "grouped_mlp", "grouped_mlp_reference", "modulated_weights",
    "upfirdn2d", "upfirdn2d_reference",
]
