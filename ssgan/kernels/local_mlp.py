"""All local generators of SemanticStyleGAN as one grouped, modulated per-pixel MLP.

Every class k has its own MLP of L layers of 1x1 modulated convolutions C -> C. For sample b,
class k and layer l with raw weight W (C_out x C_in) and style s = affine(w) (C_in):

    W'_{bkl}  = W_{kl} * s_{bkl}[None, :] / sqrt(C)                       (modulation)
    W''_{bkl} = W'_{bkl} * rsqrt(sum_in W'_{bkl}^2 + 1e-8)[:, None]        (demodulation)
    h_{l+1}   = leaky_relu(h_l @ W''_{bkl}^T + b_{kl}, 0.2) * sqrt(2)

The pseudo-depth is tapped after ``depth_layer`` layers (after layer depth_layer - 1):

    d_{bk} = h_{depth_layer} @ u_k + c_k

where u_k (C) and c_k are the to_depth weight and bias (zeros for the background, whose depth
is 0). :func:`modulated_weights` folds modulation and demodulation into per-(sample, class,
layer) weights; :func:`grouped_mlp` runs the layers on those.

:func:`grouped_mlp_reference` is the single source of truth for the maths. The Triton path
(``ssgan::grouped_mlp`` / ``ssgan::grouped_mlp_backward`` custom ops) computes the same function:

* forward kernel: one program per (pixel tile, sample*class); the x tile is loaded once and all L
  layers run back to back with the activations kept in registers (``tl.dot`` per layer against
  that (b, k, l) weight), the depth head is evaluated at the tap, h and depth are written once.
* backward kernel: first-order gradients by *recomputation* (nothing but the op inputs is saved
  between forward and backward). See :func:`_bwd_kernel` for the design (scratch, reductions).
  Recompute vs save: saving all L layer outputs would hold B*K*L*P*C values from forward to
  backward (2.2 GB fp32 / 1.1 GB bf16 at the paper's B=16, K=13, L=10, C=64, P=4096) and stream
  them through HBM twice; recomputing costs one extra dot per layer (3 instead of 2) and keeps
  the per-tile activations in a small L2-resident slab. Not yet measured on a GPU (none was
  available while writing this); ``grouped_mlp_flops(backward=True)`` counts the model FLOPs only.
* reductions over pixels (grad W, grad bias, depth head) use per-program partial sums in fp32
  (no atomics): deterministic and free of contention; a torch ``sum`` over the few splits ends it.
* double backward (R1 / path-length regularisation): the backward op's own autograd differentiates
  :func:`grouped_mlp_reference`'s VJP with ``create_graph=True``.

The kernels cover a channel count C that is a power of two >= 16 (``tl.dot`` tiles) and x and
weight of one dtype among float16 / bfloat16 / float32 / float64; other inputs follow the fallback
rule of :mod:`.backend` (reference maths, or an error if ``triton`` was forced).
"""


from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .backend import FLOAT_DTYPES, interpreting, runs_triton, tl, triton
from .launch import accumulator, autotune, configs, grid, launch, precision, split_count

SQRT2 = math.sqrt(2.0)


def grouped_mlp(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    depth_weight: torch.Tensor,
    depth_bias: torch.Tensor,
    depth_layer: int,
    detach_texture: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """All classes' local MLPs, h_{l+1} = leaky_relu(h_l W''^T + b, 0.2)·sqrt(2), and the depth
    d = h_{depth_layer} u + c (the module docstring has the formulas), on the backend chosen by
    :mod:`.backend` (the maths: :func:`grouped_mlp_reference`, which documents the shapes):
    ``triton`` runs the ``ssgan::grouped_mlp`` custom op (fused kernels, differentiable twice).
    Returns h (B, K, P, C) and depth (B, K, P)."""
    if runs_triton("grouped_mlp", x, _uncovered(x, weight)):
        return torch.ops.ssgan.grouped_mlp(x, weight, bias, depth_weight, depth_bias,
                                           int(depth_layer), bool(detach_texture))
    return grouped_mlp_reference(x, weight, bias, depth_weight, depth_bias, depth_layer, detach_texture)


def _uncovered(x: torch.Tensor, weight: torch.Tensor) -> str | None:
    """Why the kernels do not cover these inputs (None: they do)."""
    C = weight.shape[-1]
    if C < 16 or C & (C - 1):
        return f"the channel count C must be a power of two >= 16 (tl.dot tiles), got C={C}"
    if x.dtype != weight.dtype or x.dtype not in FLOAT_DTYPES:
        return f"x and weight must share a dtype among float32/bfloat16/float16/float64, got {x.dtype} and " \
               f"{weight.dtype}"
    return None


def modulated_weights(weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """Fold styles into the weights: ``weight`` (K, L, C_out, C_in), ``styles`` (B, K, L, C_in)
    -> effective weights (B, K, L, C_out, C_in), modulated by s / sqrt(C_in) and demodulated."""
    w = weight.unsqueeze(0) * styles.unsqueeze(-2) / math.sqrt(weight.shape[-1])
    return w * torch.rsqrt(w.pow(2).sum(-1, keepdim=True) + 1e-8)


def grouped_mlp_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                          depth_weight: torch.Tensor, depth_bias: torch.Tensor, depth_layer: int,
                          detach_texture: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The grouped MLP in plain PyTorch (the mathematical truth).

    x: (Bx, Kx, P, C) inputs, broadcast over samples (Bx = 1 or B) and classes (Kx = 1 or K);
    weight: (B, K, L, C, C) effective weights from :func:`modulated_weights`; bias: (K, L, C);
    depth_weight: (K, C); depth_bias: (K,). ``detach_texture`` stops the gradient of the layers
    after the depth tap from reaching the layers before it, for the classes k > 0 that have a depth
    head (as the official model does; the background's layers are never detached).
    Returns h (B, K, P, C), the last layer's activations, and depth (B, K, P).
    """
    B, K, L = weight.shape[:3]
    h = x.expand(B, K, *x.shape[2:])
    depth = None
    for layer in range(L):
        h = torch.matmul(h, weight[:, :, layer].transpose(-1, -2)) + bias[None, :, layer, None, :]
        h = F.leaky_relu(h, 0.2) * SQRT2
        if layer == depth_layer - 1:
            depth = torch.matmul(h, depth_weight[None, :, :, None]).squeeze(-1) + depth_bias[None, :, None]
            if detach_texture and layer < L - 1:  # the background (k = 0) has no depth head: not detached
                h = torch.cat([h[:, :1], h[:, 1:].detach()], 1)
    return h, depth


def grouped_mlp_flops(B: int, K: int, L: int, C: int, P: int, backward: bool = False) -> float:
    """Model FLOPs of the grouped MLP's matmuls: 2*B*K*P*L*C*C forward; ``backward`` adds twice
    that (grad of the activations and grad of the weights; recomputation is not counted)."""
    fwd = 2.0 * B * K * P * L * C * C
    return fwd * 3.0 if backward else fwd


# ------------------------------------------------------------------------------------------------
# Triton kernels
# ------------------------------------------------------------------------------------------------

# fp32 dots are IEEE on purpose (:mod:`.launch`): the default on NVIDIA is tf32 (10-bit mantissa),
# which over L = 10 chained layers drifts ~1e-3 relative from the fp32 reference and breaks parity
# tests. Speed comes from the bf16 path (tensor cores, fp32 accumulate); fp32 is the exact-parity
# path. bf16 / fp16 operands ignore input_precision.

if triton is not None:
    if interpreting():
        # The interpreter runs programs one by one in numpy: one small config (no benchmarking), tiles
        # of 16 rows so that test sizes like P = 37 have several tiles and a ragged tail.
        _FWD_CONFIGS = configs(("BLOCK_P",), [(16, 4)])
        _BWD_CONFIGS = configs(("BLOCK_P",), [(16, 4)])
    else:
        _FWD_CONFIGS = configs(("BLOCK_P",), [(bp, nw) for bp in (32, 64, 128) for nw in (4, 8)])
        _BWD_CONFIGS = configs(("BLOCK_P",), [(bp, nw) for bp in (32, 64, 128) for nw in (4, 8)])
    _BWD_MAX_BLOCK = max(c.kwargs["BLOCK_P"] for c in _BWD_CONFIGS)
    # The backward holds a few BLOCK_P x C fp32 tiles per thread; compiled for sm_90 in bf16 at
    # C = 64, L = 10 (python -m bench.sm90, before this pruning), BLOCK_P 64 and 128 spill (14 to
    # 142 local loads/stores per thread) and BLOCK_P 32 does not: tiles of more than 2048
    # pixel-channels are pruned (all are kept for C <= 16).
    _BWD_TILE_MAX = 2048

    def _prune_bwd(configs, named_args, **kwargs):
        """Drop the configs whose BLOCK_P x C tile exceeds _BWD_TILE_MAX (the smallest if none is left)."""
        C = kwargs.get("C", named_args.get("C"))  # a constexpr: passed by keyword
        kept = [c for c in configs if c.kwargs["BLOCK_P"] * C <= _BWD_TILE_MAX]
        return kept or [min(configs, key=lambda c: c.kwargs["BLOCK_P"])]

    @triton.jit
    def _to(a, DOT: tl.constexpr, EMU: tl.constexpr):
        """a.to(DOT). EMU (interpreter), for bf16 only: the interpreter's fp32 -> bf16 cast
        truncates (and its "rtne" mode mishandles the mantissa carry), which biases every layer; the
        GPU casts round to nearest even, so here that rounding is done on the fp32 bits first (the
        following cast is then exact)."""
        if EMU and DOT == tl.bfloat16:
            bits = a.to(tl.float32).to(tl.uint32, bitcast=True)
            bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
            return bits.to(tl.float32, bitcast=True).to(DOT)
        else:
            return a.to(DOT)

    @triton.jit
    def _dot(a, b, DOT: tl.constexpr, ACC: tl.constexpr, EMU: tl.constexpr):
        """a @ b with operands rounded to DOT and accumulated in ACC (fp32 dots IEEE). EMU (interpreter),
        for bf16 only: the interpreter multiplies bf16 operands as their raw uint16 bit patterns
        (np.matmul on the storage), so there the bf16-rounded operands are widened to ACC first: the
        same products (exact in fp32) and fp32 accumulation as a tensor-core bf16 dot."""
        if EMU and DOT == tl.bfloat16:
            return tl.dot(_to(a, DOT, EMU).to(ACC), _to(b, DOT, EMU).to(ACC), input_precision="ieee",
                          out_dtype=ACC)
        else:
            return tl.dot(a.to(DOT), b.to(DOT), input_precision="ieee", out_dtype=ACC)

    @triton.jit
    def _act(a, ACC: tl.constexpr):
        # leaky_relu(a, 0.2) * sqrt(2); constants built in the accumulator dtype (exact for fp64)
        pos = tl.full([1, 1], 1.4142135623730951, ACC)
        neg = tl.full([1, 1], 0.28284271247461906, ACC)
        return tl.where(a > 0, a * pos, a * neg)

    @triton.jit
    def _act_grad(g, h_out, ACC: tl.constexpr):
        # d/da of _act, read from the sign of the activation (a > 0 <=> h_out > 0; slope 0.2 at 0,
        # as torch's leaky_relu backward)
        pos = tl.full([1, 1], 1.4142135623730951, ACC)
        neg = tl.full([1, 1], 0.28284271247461906, ACC)
        return g * tl.where(h_out > 0, pos, neg)

    @triton.jit
    def _layer_fwd(h, w_l_ptr, b_l_ptr, w_offs, offs_c, DOT: tl.constexpr, ACC: tl.constexpr,
                   EMU: tl.constexpr):
        w = tl.load(w_l_ptr + w_offs)  # (C_out, C_in), coalesced
        a = _dot(h, tl.trans(w), DOT, ACC, EMU)
        a = a + tl.load(b_l_ptr + offs_c).to(ACC)[None, :]
        return _act(a, ACC)

    @triton.jit
    def _fwd_kernel(
        x_ptr, w_ptr, b_ptr, u_ptr, c_ptr, h_ptr, d_ptr,
        P, K, DL, sxb, sxk,
        L: tl.constexpr, C: tl.constexpr, BLOCK_P: tl.constexpr,
        DOT: tl.constexpr, ACC: tl.constexpr, EMU: tl.constexpr,
    ):
        pid_p = tl.program_id(0)
        bk = tl.program_id(1).to(tl.int64)
        b = bk // K
        k = bk % K
        offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
        offs_c = tl.arange(0, C)
        pmask = offs_p < P
        tile = offs_p[:, None] * C + offs_c[None, :]
        w_offs = offs_c[:, None] * C + offs_c[None, :]

        h = tl.load(x_ptr + b * sxb + k * sxk + tile, mask=pmask[:, None], other=0.0).to(ACC)
        w_base = w_ptr + bk * (L * C * C)
        b_base = b_ptr + k * (L * C)
        for layer in range(0, DL):
            h = _layer_fwd(h, w_base + layer * C * C, b_base + layer * C, w_offs, offs_c, DOT, ACC, EMU)
        u = tl.load(u_ptr + k * C + offs_c).to(ACC)
        d = tl.sum(h * u[None, :], axis=1) + tl.load(c_ptr + k).to(ACC)
        for layer in range(DL, L):
            h = _layer_fwd(h, w_base + layer * C * C, b_base + layer * C, w_offs, offs_c, DOT, ACC, EMU)

        tl.store(h_ptr + bk * P * C + tile, _to(h, DOT, EMU), mask=pmask[:, None])
        tl.store(d_ptr + bk * P + offs_p, _to(d, DOT, EMU), mask=pmask)

    @triton.jit
    def _layer_bwd(g, h_out, h_in, w_l_ptr, gw_l_ptr, gb_l_ptr, w_offs, offs_c,
                   NEED_G: tl.constexpr, DOT: tl.constexpr, ACC: tl.constexpr, EMU: tl.constexpr):
        """One layer backward on a tile: g (BLOCK_P, C_out) is dL/dh_out; accumulates this tile's
        grad W (C_out, C_in) and grad bias into the program's private partial sums; returns dL/dh_in."""
        g_pre = _act_grad(g, h_out.to(ACC), ACC)
        g_dot = _to(g_pre, DOT, EMU)
        gw = _dot(tl.trans(g_dot), h_in, DOT, ACC, EMU)
        tl.store(gw_l_ptr + w_offs, tl.load(gw_l_ptr + w_offs) + gw)
        tl.store(gb_l_ptr + offs_c, tl.load(gb_l_ptr + offs_c) + tl.sum(g_pre, axis=0))
        if NEED_G:
            w = tl.load(w_l_ptr + w_offs)
            g = _dot(g_dot, w, DOT, ACC, EMU)
        return g

    @triton.jit
    def _bwd_kernel(
        x_ptr, w_ptr, b_ptr, u_ptr, gh_ptr, gd_ptr,
        gx_ptr, gw_ptr, gb_ptr, gu_ptr, gc_ptr, scr_ptr,
        P, K, S, DL, sxb, sxk, scr_stride,
        L: tl.constexpr, C: tl.constexpr, DETACH: tl.constexpr, NEED_GX: tl.constexpr,
        BLOCK_P: tl.constexpr, DOT: tl.constexpr, ACC: tl.constexpr, EMU: tl.constexpr,
    ):
        """Backward by recomputation, one program per (sample, class, P-split s).

        A program owns the pixel tiles s, s + S, s + 2S, ... of its (b, k). Per tile it (1) reruns
        the forward, writing each layer's output tile to a program-private scratch slab in global
        memory (activation tiles cannot be indexed by layer in registers; the slab is small,
        L * BLOCK_P * C per program, and re-read right away, so it lives in L2), (2) walks the layers
        backwards with the incoming gradient in registers.

        Reductions over pixels (grad W per (b,k,l), grad bias, grad depth head) go to partial sums
        private to the program (read-add-write, no atomics: deterministic, and no contention between
        the tiles of one (b,k)); the wrapper sums the S (and B) partials with torch. The program zeroes
        its partials itself, so autotuner re-runs are idempotent. grad x is written per (b, k) and
        summed over broadcast dims by the wrapper.
        """
        pid = tl.program_id(0).to(tl.int64)
        bk = pid // S
        s = pid % S
        b = bk // K
        k = bk % K
        offs_c = tl.arange(0, C)
        offs_r = tl.arange(0, BLOCK_P)
        w_offs = offs_c[:, None] * C + offs_c[None, :]
        slab = offs_r[:, None] * C + offs_c[None, :]

        w_base = w_ptr + bk * (L * C * C)
        b_base = b_ptr + k * (L * C)
        gw_base = gw_ptr + pid * (L * C * C)
        gb_base = gb_ptr + pid * (L * C)
        scr = scr_ptr + pid * scr_stride
        x_base = x_ptr + b * sxb + k * sxk

        zero_cc = tl.zeros([C, C], dtype=ACC)
        zero_c = tl.zeros([C], dtype=ACC)
        for layer in range(0, L):
            tl.store(gw_base + layer * C * C + w_offs, zero_cc)
            tl.store(gb_base + layer * C + offs_c, zero_c)
        tl.store(gu_ptr + pid * C + offs_c, zero_c)
        tl.store(gc_ptr + pid, tl.sum(zero_c, axis=0))
        u = tl.load(u_ptr + k * C + offs_c).to(ACC)
        tl.debug_barrier()

        n_tiles = tl.cdiv(P, BLOCK_P)
        for t in range(s, n_tiles, S):
            offs_p = t * BLOCK_P + offs_r
            pmask = offs_p < P
            tile = offs_p[:, None] * C + offs_c[None, :]
            x = tl.load(x_base + tile, mask=pmask[:, None], other=0.0)

            # (1) recompute: slab[l] = output of layer l (rows past P hold act(bias): harmless, their
            # incoming gradients are zero)
            h = x.to(ACC)
            for layer in range(0, L):
                h = _layer_fwd(h, w_base + layer * C * C, b_base + layer * C, w_offs, offs_c,
                               DOT, ACC, EMU)
                tl.store(scr + layer * BLOCK_P * C + slab, _to(h, DOT, EMU))
            tl.debug_barrier()  # slab written by other threads' layouts than it is read with

            # (2) backward, layers above the depth tap
            g = tl.load(gh_ptr + bk * P * C + tile, mask=pmask[:, None], other=0.0).to(ACC)
            # (loops count up with a positive step: scf.for has no negative steps, and older Tritons
            # do not rewrite them)
            for i in range(0, L - DL):
                layer = L - 1 - i
                g = _layer_bwd(g, tl.load(scr + layer * BLOCK_P * C + slab),
                               tl.load(scr + (layer - 1) * BLOCK_P * C + slab),
                               w_base + layer * C * C, gw_base + layer * C * C, gb_base + layer * C,
                               w_offs, offs_c, True, DOT, ACC, EMU)
            # depth tap on the output of layer DL - 1
            gd = tl.load(gd_ptr + bk * P + offs_p, mask=pmask, other=0.0).to(ACC)
            h_tap = tl.load(scr + (DL - 1) * BLOCK_P * C + slab).to(ACC)
            tl.store(gu_ptr + pid * C + offs_c, tl.load(gu_ptr + pid * C + offs_c)
                     + tl.sum(gd[:, None] * h_tap, axis=0))
            tl.store(gc_ptr + pid, tl.load(gc_ptr + pid) + tl.sum(gd, axis=0))
            if DETACH:  # classes with a depth head (k > 0) only take the depth head's gradient here
                g = g * (k == 0).to(ACC)
            g = g + gd[:, None] * u[None, :]
            # layers DL - 1 .. 1 take their input from the slab, layer 0 from x
            for i in range(0, DL - 1):
                layer = DL - 1 - i
                g = _layer_bwd(g, tl.load(scr + layer * BLOCK_P * C + slab),
                               tl.load(scr + (layer - 1) * BLOCK_P * C + slab),
                               w_base + layer * C * C, gw_base + layer * C * C, gb_base + layer * C,
                               w_offs, offs_c, True, DOT, ACC, EMU)
            g = _layer_bwd(g, tl.load(scr + slab), x, w_base, gw_base, gb_base,
                           w_offs, offs_c, NEED_GX, DOT, ACC, EMU)
            if NEED_GX:
                tl.store(gx_ptr + bk * P * C + tile, g, mask=pmask[:, None])
            tl.debug_barrier()  # partial sums and slab are re-read by the next tile

    _fwd_tuned = autotune(_fwd_kernel, _FWD_CONFIGS, key=["P", "C", "L"])
    _bwd_tuned = autotune(_bwd_kernel, _BWD_CONFIGS, key=["P", "C", "L"], prune=_prune_bwd)


# ------------------------------------------------------------------------------------------------
# Launchers
# ------------------------------------------------------------------------------------------------


def _check_inputs(x, weight, bias, depth_weight, depth_bias, depth_layer):
    if weight.dim() != 5 or weight.shape[-1] != weight.shape[-2]:
        raise ValueError(f"grouped_mlp: weight must be (B, K, L, C, C), got {tuple(weight.shape)}")
    B, K, L, C = weight.shape[:4]
    if x.dim() != 4 or x.shape[0] not in (1, B) or x.shape[1] not in (1, K) or x.shape[3] != C:
        raise ValueError(f"grouped_mlp: x must be (1|B, 1|K, P, C) = (1|{B}, 1|{K}, P, {C}), "
                         f"got {tuple(x.shape)}")
    shapes = (tuple(bias.shape), tuple(depth_weight.shape), tuple(depth_bias.shape))
    if shapes != ((K, L, C), (K, C), (K,)):
        raise ValueError("grouped_mlp: bias (K, L, C), depth_weight (K, C), depth_bias (K,) expected, got "
                         f"{tuple(bias.shape)}, {tuple(depth_weight.shape)}, {tuple(depth_bias.shape)}")
    if not 1 <= depth_layer <= L:
        raise ValueError(f"grouped_mlp: depth_layer must be in [1, {L}], got {depth_layer}")
    why = _uncovered(x, weight)
    if why is not None:
        raise ValueError(f"grouped_mlp Triton kernels: {why}")


def _kernel_args(x, weight):
    B, K, L, C = weight.shape[:4]
    P = x.shape[2]
    x = x.contiguous()
    sxb = x.shape[1] * P * C if x.shape[0] > 1 else 0
    sxk = P * C if x.shape[1] > 1 else 0
    return x, B, K, L, C, P, sxb, sxk


def _grouped_mlp_triton(x, weight, bias, depth_weight, depth_bias, depth_layer):
    _check_inputs(x, weight, bias, depth_weight, depth_bias, depth_layer)
    x, B, K, L, C, P, sxb, sxk = _kernel_args(x, weight)
    h = torch.empty(B, K, P, C, device=x.device, dtype=x.dtype)
    depth = torch.empty(B, K, P, device=x.device, dtype=x.dtype)
    launch(
        _fwd_tuned, grid((P, "BLOCK_P"), B * K),
        x, weight.contiguous(), bias.contiguous(), depth_weight.contiguous(), depth_bias.contiguous(),
        h, depth, P, K, depth_layer, sxb, sxk,
        L=L, C=C, **precision(weight.dtype, dot=True),
    )
    return h, depth


def _grouped_mlp_backward_triton(grad_h, grad_depth, x, weight, bias, depth_weight, depth_bias, depth_layer,
                                 detach_texture, need_x):
    _check_inputs(x, weight, bias, depth_weight, depth_bias, depth_layer)
    x_c, B, K, L, C, P, sxb, sxk = _kernel_args(x, weight)
    dev = x.device
    acc_dtype = accumulator(weight.dtype)
    # pixel splits per (b, k): no more than the largest tile leaves tiles; off CUDA (interpreter)
    # two, so that programs own several tiles
    S = split_count(dev, B * K, triton.cdiv(P, _BWD_MAX_BLOCK), 2 * B * K)
    n_prog = B * K * S
    gw = torch.empty(n_prog, L, C, C, device=dev, dtype=acc_dtype)
    gb = torch.empty(n_prog, L, C, device=dev, dtype=acc_dtype)
    gu = torch.empty(n_prog, C, device=dev, dtype=acc_dtype)
    gc = torch.empty(n_prog, device=dev, dtype=acc_dtype)
    scr_stride = L * _BWD_MAX_BLOCK * C
    scratch = torch.empty(n_prog * scr_stride, device=dev, dtype=weight.dtype)
    gx = torch.empty(B, K, P, C, device=dev, dtype=acc_dtype) if need_x else gw  # gw: unused dummy
    launch(
        _bwd_tuned, grid(n_prog),
        x_c, weight.contiguous(), bias.contiguous(), depth_weight.contiguous(),
        grad_h.contiguous(), grad_depth.contiguous(),
        gx, gw, gb, gu, gc, scratch,
        P, K, S, depth_layer, sxb, sxk, scr_stride,
        L=L, C=C, DETACH=bool(detach_texture and depth_layer < L), NEED_GX=bool(need_x),
        **precision(weight.dtype, dot=True),
    )
    if need_x:
        dims = tuple(d for d in (0, 1) if x.shape[d] == 1 and gx.shape[d] > 1)
        grad_x = (gx.sum(dims, keepdim=True) if dims else gx).to(x.dtype)
    else:
        grad_x = torch.zeros_like(x)
    grad_w = gw.view(B, K, S, L, C, C).sum(2).to(weight.dtype)
    grad_b = gb.view(B, K, S, L, C).sum((0, 2)).to(bias.dtype)
    grad_u = gu.view(B, K, S, C).sum((0, 2)).to(depth_weight.dtype)
    grad_c = gc.view(B, K, S).sum((0, 2)).to(depth_bias.dtype)
    return grad_x, grad_w, grad_b, grad_u, grad_c


# ------------------------------------------------------------------------------------------------
# Custom ops and autograd (opaque to torch.compile: fake functions give the shapes)
# ------------------------------------------------------------------------------------------------


@torch.library.custom_op("ssgan::grouped_mlp", mutates_args=())
def _grouped_mlp_op(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, depth_weight: torch.Tensor,
    depth_bias: torch.Tensor, depth_layer: int, detach_texture: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    return _grouped_mlp_triton(x, weight, bias, depth_weight, depth_bias, depth_layer)


@_grouped_mlp_op.register_fake
def _(x, weight, bias, depth_weight, depth_bias, depth_layer, detach_texture):
    B, K = weight.shape[:2]
    P, C = x.shape[2:]
    return x.new_empty(B, K, P, C), x.new_empty(B, K, P)


@torch.library.custom_op("ssgan::grouped_mlp_backward", mutates_args=())
def _grouped_mlp_backward_op(
    grad_h: torch.Tensor, grad_depth: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
    bias: torch.Tensor, depth_weight: torch.Tensor, depth_bias: torch.Tensor, depth_layer: int,
    detach_texture: bool, need_x: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return _grouped_mlp_backward_triton(grad_h, grad_depth, x, weight, bias, depth_weight, depth_bias,
                                        depth_layer, detach_texture, need_x)


@_grouped_mlp_backward_op.register_fake
def _(grad_h, grad_depth, x, weight, bias, depth_weight, depth_bias, depth_layer, detach_texture, need_x):
    return (torch.empty_like(x), torch.empty_like(weight), torch.empty_like(bias),
            torch.empty_like(depth_weight), torch.empty_like(depth_bias))


def _grouped_mlp_setup(ctx, inputs, output):
    x, weight, bias, depth_weight, depth_bias, depth_layer, detach_texture = inputs
    ctx.save_for_backward(x, weight, bias, depth_weight, depth_bias)
    ctx.depth_layer = depth_layer
    ctx.detach_texture = detach_texture


def _grouped_mlp_grad(ctx, grad_h, grad_depth):
    x, weight, bias, depth_weight, depth_bias = ctx.saved_tensors
    if grad_h is None:
        grad_h = torch.zeros(*weight.shape[:2], *x.shape[2:], device=x.device, dtype=x.dtype)
    if grad_depth is None:
        grad_depth = torch.zeros(*weight.shape[:2], x.shape[2], device=x.device, dtype=x.dtype)
    grads = torch.ops.ssgan.grouped_mlp_backward(
        grad_h, grad_depth, x, weight, bias, depth_weight, depth_bias, ctx.depth_layer,
        ctx.detach_texture, ctx.needs_input_grad[0])
    needs = ctx.needs_input_grad[:5]
    return (*(g if need else None for g, need in zip(grads, needs, strict=True)), None, None)


_grouped_mlp_op.register_autograd(_grouped_mlp_grad, setup_context=_grouped_mlp_setup)


def _grouped_mlp_backward_setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs[:7])
    ctx.depth_layer, ctx.detach_texture = inputs[7], inputs[8]


def _grouped_mlp_backward_grad(ctx, ggx, ggw, ggb, ggu, ggc):
    """Double backward through the reference maths: differentiate the VJP of
    :func:`grouped_mlp_reference` (create_graph=True) w.r.t. grad outputs and inputs."""
    saved = ctx.saved_tensors
    with torch.enable_grad():
        leaves = [t.detach().requires_grad_(True) for t in saved]
        grad_h, grad_depth, x, weight, bias, depth_weight, depth_bias = leaves
        h, depth = grouped_mlp_reference(x, weight, bias, depth_weight, depth_bias,
                                         ctx.depth_layer, ctx.detach_texture)
        params = (x, weight, bias, depth_weight, depth_bias)
        first = torch.autograd.grad((h, depth), params, (grad_h, grad_depth), create_graph=True,
                                    allow_unused=True)
        pairs = [(f, gg) for f, gg in zip(first, (ggx, ggw, ggb, ggu, ggc), strict=True)
                 if f is not None and gg is not None and f.requires_grad]
        if pairs:
            second = torch.autograd.grad([f for f, _ in pairs], leaves, [gg for _, gg in pairs],
                                         allow_unused=True)
        else:
            second = (None,) * len(leaves)
    second = [None if (s is None or not need) else s
              for s, need in zip(second, ctx.needs_input_grad[:7], strict=True)]
    return (*second, None, None, None)


_grouped_mlp_backward_op.register_autograd(_grouped_mlp_backward_grad,
                                           setup_context=_grouped_mlp_backward_setup)
