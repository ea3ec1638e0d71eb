"""upfirdn2d: upsample by zero insertion, pad, FIR-filter, downsample.

For input x (N, C, H, W), a 2-D filter f (kh, kw), factors ``up`` and ``down`` and padding
(x0, x1, y0, y1) (negative values crop):

    u[n, c, i, j] = x[n, c, i / up, j / up] if up divides i and j, else 0
    v             = pad(u, x0, x1, y0, y1)
    y[n, c, i, j] = sum_{a,b} v[n, c, i·down + a, j·down + b] · f[kh - 1 - a, kw - 1 - b]

i.e. a true convolution with f (the filter flipped, as the official op does) sampled every
``down`` pixels. Output size: (H·up + y0 + y1 - kh) // down + 1, likewise for the width.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def _pad4(pad: Sequence[int]) -> tuple[int, int, int, int]:
    if len(pad) == 2:
        return (pad[0], pad[1], pad[0], pad[1])
    if len(pad) == 4:
        return tuple(pad)  # type: ignore[return-value]
    raise ValueError(f"pad must have 2 or 4 entries, got {pad!r}")


def upfirdn2d_reference(
    x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad: Sequence[int] = (0, 0)
) -> torch.Tensor:
    """The op in plain PyTorch (the mathematical truth)."""
    x0, x1, y0, y1 = _pad4(pad)
    N, C, H, W = x.shape
    if up > 1:
        x = F.pad(x.reshape(N, C, H, 1, W, 1), [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(N, C, H * up, W * up)
    x = F.pad(x, [max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)])
    x = x[:, :, max(-y0, 0): x.shape[2] - max(-y1, 0), max(-x0, 0): x.shape[3] - max(-x1, 0)]
    f = kernel.flip([0, 1]).to(x.dtype)[None, None].expand(C, 1, *kernel.shape)
    return F.conv2d(x, f, stride=down, groups=C)


def upfirdn2d(
    x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad: Sequence[int] = (0, 0)
) -> torch.Tensor:
    """:func:`upfirdn2d_reference`'s maths with the backend chosen by :mod:`.backend`."""
    return upfirdn2d_reference(x, kernel, up, down, pad)
