"""A fingerprint of a module's weights: which generator an encoder file was trained against, and
whether the ranks of a distributed run hold the same networks."""

from __future__ import annotations

import hashlib

from torch import nn


def param_digest(*modules: nn.Module) -> str:
    """sha256 over ``modules`` in order, over each one's parameters then buffers (in
    ``named_parameters`` / ``named_buffers`` order): each name's UTF-8 bytes, then its tensor's
    bytes (CPU, contiguous)."""
    h = hashlib.sha256()
    for m in modules:
        for name, t in list(m.named_parameters()) + list(m.named_buffers()):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
