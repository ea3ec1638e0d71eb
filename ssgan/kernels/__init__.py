"""ssgan.kernels: the model's hot ops, each a reference implementation and a Triton one.

Public ops (dispatching on :mod:`.backend`): :func:`grouped_mlp`, :func:`fuse`, :func:`bias_act`,
:func:`upfirdn2d`; plus :func:`modulated_weights` and :func:`fusion_weights`, the shared maths.
"""

from .backend import BACKENDS, backend_for, set_backend, use_backend
from .bias_act import bias_act, bias_act_reference
from .fusion import fuse, fuse_reference, fusion_weights
from .local_mlp import grouped_mlp, grouped_mlp_reference, modulated_weights
from .upfirdn2d import upfirdn2d, upfirdn2d_reference

__all__ = [
    "BACKENDS", "backend_for", "set_backend", "use_backend",
    "bias_act", "bias_act_reference",
    "fuse", "fuse_reference", "fusion_weights",
    "grouped_mlp", "grouped_mlp_reference", "modulated_weights",
    "upfirdn2d", "upfirdn2d_reference",
]
