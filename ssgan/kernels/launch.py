"""What the four kernel files share to launch their Triton kernels: the dtypes they take and the
precision flags, the memory layout, split counts of reductions, launch grids and autotuning.

Precision flags
---------------
Every kernel selects its arithmetic with the same ``tl.constexpr`` parameters, set by
:func:`precision` from the inputs' torch dtype (one of :data:`.backend.FLOAT_DTYPES`):

* ``ACC`` (every kernel): the accumulator dtype, in which sums and element-wise maths run:
  ``tl.float64`` for float64 inputs, ``tl.float32`` otherwise. Partial sums finished on the host
  use the same dtype in torch (:func:`accumulator`).
* ``DOT`` (the kernels with ``tl.dot``: fusion, local_mlp): the inputs' own dtype, which the dot
  operands have. bf16 / fp16 run on the tensor cores with fp32 accumulation; fp32 dots are IEEE
  (``input_precision="ieee"``: TF32 would cost ~1e-3 relative error against the reference; bf16
  is the fast path); fp64 accumulates in fp64 (each file says how it multiplies).
* ``EMU`` (with ``DOT``): the kernel runs under Triton's interpreter
  (:func:`.backend.interpreting`), whose numpy dot multiplies bf16 operands as raw bit patterns:
  there the kernels emulate the GPU's low-precision dot in fp32 (each file says what it
  emulates). Compiled kernels get ``EMU = False``.

Autotuning, one way for every kernel: a plain ``@triton.jit`` kernel is wrapped once by
:func:`autotune` (configs from :func:`configs`, block sizes pruned by :func:`prune_blocks`) and
launched by :func:`launch` over a :func:`grid`: autotuned, or with one fixed config (the files'
interpreter and fp64 tiles).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from .backend import dtype_uncovered, interpreting, tl, triton


def accumulator(dtype: torch.dtype) -> torch.dtype:
    """The torch dtype of ``ACC`` for inputs of ``dtype``: float64 for float64, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def precision(dtype: torch.dtype, dot: bool = False) -> dict:
    """The precision flags (module docstring) for inputs of ``dtype``: ``ACC``, and with ``dot``
    also ``DOT`` and ``EMU``."""
    why = dtype_uncovered(dtype)
    if why is not None:
        raise TypeError(f"ssgan kernels: {why}")
    flags = {"ACC": tl.float64 if dtype == torch.float64 else tl.float32}
    if dot:
        flags["DOT"] = {torch.float16: tl.float16, torch.bfloat16: tl.bfloat16, torch.float32: tl.float32,
                        torch.float64: tl.float64}[dtype]
        flags["EMU"] = interpreting()
    return flags


def layout(x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """x in a memory layout the kernels take, and whether its channels (dim 1) are the innermost
    axis: contiguous (channels innermost only for 2-D (N, C)) or 4-D channels-last. Other strides
    are made contiguous (one copy, deliberately)."""
    if x.is_contiguous():
        return x, x.ndim == 2
    if x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last):
        return x, True
    return x.contiguous(), x.ndim == 2


def split_count(device: torch.device, groups: int, most: int, cpu_target: int) -> int:
    """How many pieces a reduction is split into, each piece one program for each of ``groups``:
    enough that the programs fill a GPU about four times over (4 per SM; ``cpu_target`` programs
    off CUDA, i.e. under the interpreter), at most ``most``, at least 1."""
    if device.type == "cuda":
        target = 4 * torch.cuda.get_device_properties(device).multi_processor_count
    else:
        target = cpu_target
    return max(1, min(triton.cdiv(target, groups), most))


Axis = int | tuple[int, str] | list


def grid(*axes: Axis) -> Callable[[dict], tuple[int, ...]]:
    """A launch grid as a function of the config's meta-parameters. Each axis is a count, a
    ``(size, block)`` pair — ceil(size / config[block]) tiles — or a list of those, multiplied
    into one axis."""
    def count(factor, meta) -> int:
        return triton.cdiv(factor[0], meta[factor[1]]) if isinstance(factor, tuple) else factor

    def programs(meta: dict) -> tuple[int, ...]:
        return tuple(math.prod(count(f, meta) for f in axis) if isinstance(axis, list) else count(axis, meta)
                     for axis in axes)
    return programs


def configs(names: Sequence[str], rows: Sequence[tuple]) -> list:
    """Autotune configs, one a row: the block sizes named by ``names``, then num_warps and
    num_stages where given (Triton's defaults otherwise)."""
    n = len(names)
    return [triton.Config(dict(zip(names, row[:n], strict=True)), *row[n:]) for row in rows]


def prune_blocks(*dims: tuple[str, str, int]) -> Callable:
    """An ``early_config_prune`` for :func:`autotune`. ``dims``: (config name, size argument,
    smallest block) triples; a config is dropped when one of its blocks exceeds what the size
    needs, max(smallest block, next power of two of the size) (it would only redo masked work).
    If none is left, the configs with the smallest blocks (their product) remain."""
    def prune(configs, named_args, **kwargs):
        need = {name: max(floor, triton.next_power_of_2(named_args[arg])) for name, arg, floor in dims}
        kept = [c for c in configs if all(c.kwargs[name] <= n for name, n in need.items())]
        if kept:
            return kept
        sizes = [math.prod(c.kwargs[name] for name in need) for c in configs]
        return [c for c, size in zip(configs, sizes, strict=True) if size == min(sizes)]
    return prune


def autotune(kernel, configs: list, key: list[str], prune: Callable | None = None,
             reset_to_zero: list[str] | None = None):
    """``kernel`` under Triton's autotuner: on the first launch for each value of the ``key``
    arguments (and of the tensors' dtypes) it times ``configs`` (those ``prune`` keeps, see
    :func:`prune_blocks`) and keeps the fastest; ``reset_to_zero``: buffers zeroed before each
    trial. The plain kernel stays reachable for :func:`launch`'s fixed configs."""
    prune_by = None if prune is None else {"early_config_prune": prune}
    return triton.autotune(configs, key=key, prune_configs_by=prune_by, reset_to_zero=reset_to_zero)(kernel)


def launch(tuned, programs: Callable[[dict], tuple[int, ...]], *args, fixed: dict | None = None,
           **meta) -> None:
    """Run ``tuned`` (from :func:`autotune`) on ``args`` and the constexprs ``meta`` over the grid
    ``programs`` (from :func:`grid`): the autotuner's config, or, with ``fixed`` (block sizes, and
    num_warps where given), the plain kernel with that one config."""
    if fixed is None:
        tuned[programs](*args, **meta)
    else:
        tuned.fn[programs(fixed)](*args, **fixed, **meta)
