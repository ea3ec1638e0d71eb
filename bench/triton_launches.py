"""Triton kernel launches intercepted: recorded instead of run, so that the launchers of
:mod:`ssgan.kernels` can be driven on CPU tensors without a GPU (and without the interpreter,
whose autotune configs differ from the GPU's).

Inside :func:`intercepted` every ``JITFunction.run`` and ``Autotuner.run`` appends a
:class:`Launch` and returns without compiling or running anything; the outputs the launcher
allocated stay uninitialised. A launch through an autotuner records the configs its pruning keeps
at these arguments (``Autotuner.prune_configs``, exactly as a real first call would benchmark
them); a plain launch records one pseudo-config made of the launch's own meta-parameters.

:func:`compile_spec` turns a recorded launch and one config into what ``triton.compile`` needs
for another target (an sm_90 H100 here), following ``JITFunction.run``: the same binder
(argument types, 16-byte alignment and ``== 1`` specialisation), the same option parsing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource, make_backend
from triton.runtime.autotuner import Autotuner, Config
from triton.runtime.jit import JITFunction, create_function_from_signature

SM90 = GPUTarget("cuda", 90, 32)


@dataclass
class Launch:
    """One intercepted launch: the jitted function, its arguments (tensors included), the keyword
    arguments of the call (constexprs, options) and the configs it would run with."""

    fn: JITFunction
    args: tuple
    kwargs: dict[str, Any]
    configs: list[Config]
    autotuned: bool

    @property
    def name(self) -> str:
        return f"{self.fn.fn.__module__}.{self.fn.fn.__name__}"


def _jit_of(fn: Any) -> JITFunction:
    while not isinstance(fn, JITFunction):
        fn = fn.fn
    return fn


@contextlib.contextmanager
def intercepted(keep_args: bool = True) -> Iterator[list[Launch]]:
    """Record every Triton launch in the yielded list instead of running it. ``keep_args=False``
    drops the arguments (only the count and the configs are kept: no tensor stays alive)."""
    launches: list[Launch] = []
    tuned_run, jit_run = Autotuner.run, JITFunction.run

    def tuner(self, *args, grid=None, warmup=False, **kwargs):
        self.nargs = dict(zip(self.arg_names, args, strict=False))
        configs = self.prune_configs(kwargs) if len(self.configs) > 1 else list(self.configs)
        self.nargs = None
        launches.append(Launch(_jit_of(self.fn), args if keep_args else (), kwargs, configs, True))

    def plain(self, *args, grid, warmup, **kwargs):
        names = {p.name for p in self.params if p.is_constexpr}
        meta = {k: v for k, v in kwargs.items() if k in names}
        opts = {k: v for k, v in kwargs.items() if k not in names}
        config = Config(meta, num_warps=opts.pop("num_warps", 4), num_stages=opts.pop("num_stages", 3))
        launches.append(Launch(self, args if keep_args else (), opts, [config], False))

    Autotuner.run, JITFunction.run = tuner, plain
    try:
        yield launches
    finally:
        Autotuner.run, JITFunction.run = tuned_run, jit_run


def compile_spec(launch: Launch, config: Config, target: GPUTarget = SM90) -> tuple[ASTSource, dict]:
    """(source, options) for ``triton.compile(source, target=target, options=options)`` of
    ``launch`` under ``config``, specialised as ``JITFunction.run`` would on ``target``."""
    fn = launch.fn
    backend = make_backend(target)
    binder = create_function_from_signature(fn.signature, fn.params, backend)
    kwargs = {**launch.kwargs, **config.all_kwargs(), "debug": False}  # as JITFunction.run, debug off
    bound, specialization, _ = binder(*launch.args, **kwargs)
    options, signature, constexprs, attrs = fn._pack_args(backend, kwargs, bound, specialization, None)
    return ASTSource(fn, signature, constexprs, attrs), options.__dict__
