"""Ahead-of-time compilation of ssgan's Triton kernels for an H100 (sm_90) without a GPU.

Used by the tests (in a subprocess: TRITON_INTERPRET must be unset before ssgan.kernels is
imported, since the autotune configs depend on it). As a script it prints, for every autotune
config of the fusion kernels that the autotuner keeps at paper shapes (after its early pruning,
which drops the fp32 forward configs too big for sm_90), the shared memory the compiled kernel
needs (bytes), as JSON:

    python tests/aot_sm90.py [fwd,bwd_h,bwd_v] [bf16,fp32]

The shared memory is read off the compiler (``metadata["shared"]``, set when the kernel is
lowered to LLVM IR, after shared-memory allocation); compilation stops there, before PTX and
ptxas, which a shared-memory question does not need.
"""

from __future__ import annotations

import json
import sys

import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

SM90 = GPUTarget("cuda", 90, 32)
SM90_SHARED_BYTES = 227 * 1024  # the opt-in maximum per block on sm_90 (232448 bytes)
DIMS = {"K": "i32", "P": "i32", "F": "i32", "C": "i32", "BP": "i32", "CHUNK": "i32"}


def compile_sm90(fn, types: dict, consts: dict, warps: int, stages: int):
    """triton.compile of ``fn`` for sm_90 at paper-shape specialisation (16-aligned pointers; P, F,
    C multiples of 16); ``types`` maps argument names to Triton types, the rest are constexprs."""
    sig = {n: types.get(n, "constexpr") for n in fn.arg_names}
    attrs = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(fn.arg_names)
             if sig[n].startswith("*") or n in ("P", "F", "C", "BP", "CHUNK")}
    return triton.compile(ASTSource(fn=fn, signature=sig, constexprs=consts, attrs=attrs), target=SM90,
                          options={"num_warps": warps, "num_stages": stages})


class _Lowered(Exception):
    def __init__(self, shared: int):
        self.shared = shared


def shared_bytes(fn, types: dict, consts: dict, warps: int, stages: int) -> int:
    """Shared memory of ``fn`` compiled for sm_90, in bytes (compilation stops after LLVM IR)."""
    from triton.backends.nvidia.compiler import CUDABackend

    original = CUDABackend.add_stages

    def add_stages(self, stages_, *args, **kwargs):
        original(self, stages_, *args, **kwargs)
        make_llir = stages_["llir"]

        def llir_then_stop(src, metadata):
            make_llir(src, metadata)
            raise _Lowered(metadata["shared"])
        stages_["llir"] = llir_then_stop

    CUDABackend.add_stages = add_stages
    try:
        kernel = compile_sm90(fn, types, consts, warps, stages)
    except _Lowered as done:
        return done.shared
    finally:
        CUDABackend.add_stages = original
    return kernel.metadata.shared  # found in Triton's cache: compiled earlier, no stage ran


def fusion_types(dtype: str) -> tuple[dict, dict]:
    """(argument types, common constexprs) of the fusion kernels for inputs of ``dtype``."""
    names = ("h_ptr", "d_ptr", "v_ptr", "e_ptr", "out_ptr", "m_ptr", "g_ptr", "gh_ptr")
    ptrs = {n: "*" + dtype for n in names}
    acc = {n: "*fp32" for n in ("cm_ptr", "t_ptr", "w_ptr", "gw_ptr", "pv_ptr", "pe_ptr")}
    dot = {"bf16": tl.bfloat16, "fp16": tl.float16, "fp32": tl.float32}[dtype]
    return {**DIMS, **ptrs, **acc}, {"DOT": dot, "ACC": tl.float32, "EMU": False, "BLOCK_C": 64}


def fusion_config_shared(kernels=("fwd", "bwd_h", "bwd_v"), dtypes=("bf16", "fp32")) -> list[dict]:
    """Shared memory of every autotune config the fusion kernels keep at paper shapes (C = 64,
    F = 512)."""
    import ssgan.kernels.fusion as fz

    table = {"fwd": (fz._fwd_kernel, fz._FWD_CFG, fz._prune_fwd, {"HAS_MASK": True, "HAS_T": True, "KP": 16}),
             "bwd_h": (fz._bwd_h_kernel, fz._BWD_H_CFG, fz._prune_f, {}),
             "bwd_v": (fz._bwd_v_kernel, fz._BWD_V_CFG, fz._prune_f, {})}
    out = []
    for dtype in dtypes:
        types, common = fusion_types(dtype)
        for name in kernels:
            fn, configs, prune, extra = table[name]
            for c in prune(configs, {"F": 512}, **common):
                shared = shared_bytes(fn, types, {**common, **extra, **c.kwargs}, c.num_warps, c.num_stages)
                out.append({"kernel": name, "dtype": dtype, "config": c.kwargs, "num_warps": c.num_warps,
                            "num_stages": c.num_stages, "shared": shared})
    return out


if __name__ == "__main__":
    kernels = sys.argv[1].split(",") if len(sys.argv) > 1 else ("fwd", "bwd_h", "bwd_v")
    dtypes = sys.argv[2].split(",") if len(sys.argv) > 2 else ("bf16", "fp32")
    print(json.dumps({"triton": triton.__version__, "limit": SM90_SHARED_BYTES,
                      "configs": fusion_config_shared(kernels, dtypes)}))
