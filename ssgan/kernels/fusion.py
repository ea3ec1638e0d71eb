"""Depth-softmax fusion of the local generators' outputs, with the to_feat projection.

With h_k (P x C) the last hidden activations of class k, d_k (P) its pseudo-depth, V_k (F x C)
and e_k (F) its to_feat effective weight and bias:

    m        = softmax_k(d)                                      (per pixel)
    m        = m * mask / (sum_k m * mask + 1e-8)                (if a composition mask is given)
    w        = m (1 - t) / (sum_k m (1 - t) + 1e-8) + m t        (if classes are transparent, t in {0,1}^K)
    feature  = sum_k w_k (h_k V_k^T + e_k)
             = [w_1 h_1, ..., w_K h_K] (P x K·C) @ [V_1 ... V_K]^T (K·C x F) + w @ e

The second form is a single GEMM that never builds the K x F x P tensor. The coarse mask
returned is m (after the composition mask, before the transparency re-weighting); the model
rescales it to 2m - 1.

Triton implementation (backend ``triton``)
-------------------------------------------
Forward, one kernel, grid (P tiles, F tiles, B). Its prologue loads the depth of all K classes
for the pixel tile (K padded to a power of two >= 16, masked) and computes the softmax, the
composition-mask and the transparency re-weighting in fp32 registers, with the same 1e-8
epsilons as :func:`fusion_weights`; recomputing this per F tile costs B·K·P·(F/BLOCK_F) flops,
nothing next to the GEMM, and saves a launch and a (B, K, P) round trip. The F-tile-0 programs
write m. Then, for each class k, the h_k tile (BLOCK_P x C) is scaled by w_k (before the dot: a
P x C multiply rather than a P x F one) and multiplied with V_k^T (C x BLOCK_F) into one fp32
accumulator: the GEMM over K·C. The bias term w @ e is one more (BLOCK_P x Kpad) @ (Kpad x
BLOCK_F) dot on the same accumulator.

Backward, two GEMM kernels. The weights w are recomputed in torch by :func:`fusion_weights`
itself (B·K·P numbers; the forward kernel's prologue is tested against it):

* ``_bwd_h_kernel``, grid (P tiles, K, B): G_k = g @ V_k (P x C, fp32, looping over F), then
  grad h_k = w_k G_k and grad w_k = rowsum(h_k * G_k) + g @ e_k. g @ e_k is an element-wise
  multiply-add over the g tile already in registers (one FMA per (p, f) against C MACs for the
  dot), cheaper than a second pass over g.
* ``_bwd_v_kernel``, grid (F tiles, K, splits): grad V_k = g^T @ (w_k h_k) and grad e_k = g^T w_k,
  both reductions over the B·P rows. The reduction is split into ``splits`` contiguous row
  ranges (about four programs per SM) that write fp32 partials, summed by torch afterwards: a
  deterministic split-K (fp32 atomics would be nondeterministic run to run, and would need
  zeroing around every autotuning trial); the partials are splits·K·F·C floats (~19 MB at paper
  shapes).
* The gradient of the depth from (grad w, grad m): the chain rule through the transparency, the
  composition mask and the softmax, written out in torch (:func:`_fusion_weights_vjp`; B·K·P
  work). Autograd over fusion_weights is unavailable there: custom-op implementations run below
  the autograd dispatch key. The tests check it against autograd over fusion_weights.

Precision (the flags ``DOT``, ``ACC``, ``EMU`` of :mod:`.launch`): bf16/fp16 inputs use the tensor
cores with fp32 accumulation (w·h is rounded to the input dtype before the dot, as the reference
rounds h V^T). fp32 inputs use ``input_precision="ieee"`` deliberately: TF32 would cost ~1e-3
relative error against the reference; use bf16 for speed. fp64 (used by gradcheck) accumulates in
fp64 with an explicit multiply-and-sum instead of ``tl.dot`` (Triton 3.6 has no portable fp64 dot)
and small fixed tiles.

Autograd: ``ssgan::fuse`` and ``ssgan::fuse_backward`` are ``torch.library.custom_op`` s with fake
(meta) functions, so they run inside ``torch.compile(fullgraph=True)``. First-order gradients come
from the kernels; the backward of ``ssgan::fuse_backward`` (double backward, for R1 and
path-length regularisation) recomputes the VJP of :func:`fuse_reference` with
``create_graph=True`` and differentiates it: reference maths, which materialises the K x F x P
tensor, and supports second order only.

The kernels cover float16 / bfloat16 / float32 / float64 inputs with C <= 256 (one C tile per
class); other inputs follow the fallback rule of :mod:`.backend` (reference maths, or an error if
``triton`` was forced).
"""


from __future__ import annotations

import torch

from .backend import dtype_uncovered, interpreting, runs_triton, tl, triton
from .launch import accumulator, autotune, configs, grid, launch, precision, prune_blocks, split_count


def fuse(
    h: torch.Tensor,
    depth: torch.Tensor,
    feat_weight: torch.Tensor,
    feat_bias: torch.Tensor,
    composition_mask: torch.Tensor | None = None,
    transparent: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """feature = Σ_k w_k (h_k V_k^T + e_k) and the coarse mask m = softmax_k(depth) (the module
    docstring has the formulas), on the backend chosen by :mod:`.backend` (the maths:
    :func:`fuse_reference`).

    h: (B, K, P, C); depth: (B, K, P); feat_weight: (K, F, C); feat_bias: (K, F);
    composition_mask: (B, K) of 0/1 or None; transparent: (K,) of 0/1 or None.
    Returns feature (B, P, F) and m (B, K, P)."""
    if runs_triton("fuse", h, _uncovered(h)):
        return torch.ops.ssgan.fuse(h, depth, feat_weight, feat_bias, composition_mask, transparent)
    return fuse_reference(h, depth, feat_weight, feat_bias, composition_mask, transparent)


def _uncovered(h: torch.Tensor) -> str | None:
    """Why the kernels do not cover these inputs (None: they do)."""
    if why := dtype_uncovered(h.dtype):
        return why
    if h.ndim == 4 and h.shape[-1] > 256:
        return f"C = {h.shape[-1]} > 256 (one C tile per class)"
    return None


def fusion_weights(
    depth: torch.Tensor, composition_mask: torch.Tensor | None, transparent: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """depth (B, K, P) -> (w, m): the per-class feature weights and the coarse mask, both (B, K, P).

    composition_mask: (B, K) of 0/1 or None; transparent: (K,) of 0/1 or None (None when no class
    is transparent: then w = m exactly)."""
    m = torch.softmax(depth, dim=1)
    if composition_mask is not None:
        m = m * composition_mask[:, :, None].to(m.dtype)
        m = m / (m.sum(1, keepdim=True) + 1e-8)
    if transparent is None:
        return m, m
    t = transparent.to(m.dtype)[None, :, None]
    opaque = m * (1 - t)
    w = opaque / (opaque.sum(1, keepdim=True) + 1e-8) + m * t
    return w, m


def fuse_reference(h: torch.Tensor, depth: torch.Tensor, feat_weight: torch.Tensor, feat_bias: torch.Tensor,
                   composition_mask: torch.Tensor | None = None, transparent: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """The fusion in plain PyTorch, the way the official model computes it (per-class feature maps).

    h: (B, K, P, C); depth: (B, K, P); feat_weight: (K, F, C); feat_bias: (K, F).
    Returns feature (B, P, F) and the coarse mask m (B, K, P).
    """
    w, m = fusion_weights(depth, composition_mask, transparent)
    feats = torch.matmul(h, feat_weight.transpose(-1, -2)[None]) + feat_bias[None, :, None, :]
    return (w.unsqueeze(-1) * feats).sum(1), m


def fuse_flops(B: int, K: int, C: int, F: int, P: int, backward: bool = False) -> float:
    """Useful flops of the fusion GEMM: 2·B·P·K·C·F for the forward; the backward pass alone
    (grad h = w·(g @ V) and grad V = g^T @ (w·h), no recomputed forward) does twice that. The
    O(B·P·K·F) bias terms and the O(B·K·P) softmax are left out."""
    forward = 2.0 * B * P * K * C * F
    return 2.0 * forward if backward else forward


# ------------------------------------------------------------------------------------------------
# Triton kernels
# ------------------------------------------------------------------------------------------------

_GRAN = 32 if interpreting() else 128  # split-K row ranges are multiples of this (>= every BLOCK_R)

if triton is not None:
    @triton.jit
    def _mm(a, b, acc, DOT: tl.constexpr, EMU: tl.constexpr):
        """acc + a @ b, operands of dtype DOT: bf16/fp16 on the tensor cores (fp32 acc); fp32 IEEE;
        fp64 by multiply-and-sum. EMU (interpreter): its dot multiplies the raw bits of bf16
        operands, so bf16/fp16 operands are upcast to fp32 first: the same products (exact in
        fp32) and fp32 accumulation as the tensor cores."""
        if DOT == tl.float64:
            out = acc + tl.sum(a[:, :, None] * b[None, :, :], axis=1)
        elif DOT == tl.float32:
            out = tl.dot(a, b, acc, input_precision="ieee")
        elif EMU:
            out = tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
        else:
            out = tl.dot(a, b, acc)
        return out

    @triton.jit
    def _fwd_kernel(
        h_ptr, d_ptr, v_ptr, e_ptr, cm_ptr, t_ptr, out_ptr, m_ptr,
        K, P, F, C,
        HAS_MASK: tl.constexpr, HAS_T: tl.constexpr, DOT: tl.constexpr, ACC: tl.constexpr, EMU: tl.constexpr,
        KP: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_F: tl.constexpr,
    ):
        pid_p = tl.program_id(0)
        pid_f = tl.program_id(1)
        b = tl.program_id(2).to(tl.int64)
        offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
        offs_f = pid_f * BLOCK_F + tl.arange(0, BLOCK_F)
        offs_k = tl.arange(0, KP)
        offs_c = tl.arange(0, BLOCK_C)
        p_ok = offs_p < P
        f_ok = offs_f < F
        k_ok = offs_k < K
        c_ok = offs_c < C

        # Prologue: fusion weights of the pixel tile, (BLOCK_P, KP), as in fusion_weights().
        pk_ptrs = (b * K + offs_k[None, :]) * P + offs_p[:, None]
        pk_ok = p_ok[:, None] & k_ok[None, :]
        d = tl.load(d_ptr + pk_ptrs, mask=pk_ok, other=0.0).to(ACC)
        d = tl.where(k_ok[None, :], d, float("-inf"))
        ex = tl.exp(d - tl.max(d, axis=1)[:, None])
        m = ex / tl.sum(ex, axis=1)[:, None]
        if HAS_MASK:
            cm = tl.load(cm_ptr + b * K + offs_k, mask=k_ok, other=0.0).to(ACC)
            m = m * cm[None, :]
            m = m / (tl.sum(m, axis=1)[:, None] + 1e-8)
        w = m
        if HAS_T:
            t = tl.load(t_ptr + offs_k, mask=k_ok, other=0.0).to(ACC)
            opaque = m * (1.0 - t[None, :])
            w = opaque / (tl.sum(opaque, axis=1)[:, None] + 1e-8) + m * t[None, :]
        if pid_f == 0:
            tl.store(m_ptr + pk_ptrs, m.to(m_ptr.dtype.element_ty), mask=pk_ok)

        # Main loop: the GEMM over K·C, one class (C columns of A, C rows of B) per step.
        acc = tl.zeros((BLOCK_P, BLOCK_F), dtype=ACC)
        h_base = h_ptr + b * K * P * C
        pc_ok = p_ok[:, None] & c_ok[None, :]
        cf_ok = c_ok[:, None] & f_ok[None, :]
        for k in range(K):
            wk = tl.sum(tl.where(offs_k[None, :] == k, w, 0.0), axis=1)
            a = tl.load(h_base + (k * P + offs_p[:, None]) * C + offs_c[None, :], mask=pc_ok, other=0.0)
            a = (a.to(ACC) * wk[:, None]).to(h_ptr.dtype.element_ty)
            vt = tl.load(v_ptr + (k * F + offs_f[None, :]) * C + offs_c[:, None], mask=cf_ok, other=0.0)
            acc = _mm(a, vt, acc, DOT, EMU)
        # Bias: w (BLOCK_P, KP) @ e (KP, BLOCK_F) on the same accumulator.
        et = tl.load(e_ptr + offs_k[:, None] * F + offs_f[None, :], mask=k_ok[:, None] & f_ok[None, :],
                     other=0.0)
        acc = _mm(w.to(e_ptr.dtype.element_ty), et, acc, DOT, EMU)
        out_ptrs = out_ptr + (b * P + offs_p[:, None]) * F + offs_f[None, :]
        tl.store(out_ptrs, acc.to(out_ptr.dtype.element_ty), mask=p_ok[:, None] & f_ok[None, :])

    @triton.jit
    def _bwd_h_kernel(
        g_ptr, h_ptr, v_ptr, e_ptr, w_ptr, gh_ptr, gw_ptr,
        K, P, F, C,
        DOT: tl.constexpr, ACC: tl.constexpr, EMU: tl.constexpr,
        BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_F: tl.constexpr,
    ):
        pid_p = tl.program_id(0)
        k = tl.program_id(1)
        b = tl.program_id(2).to(tl.int64)
        offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
        offs_c = tl.arange(0, BLOCK_C)
        p_ok = offs_p < P
        c_ok = offs_c < C
        acc = tl.zeros((BLOCK_P, BLOCK_C), dtype=ACC)  # G_k = g @ V_k
        ge = tl.zeros((BLOCK_P,), dtype=ACC)  # g @ e_k
        g_rows = g_ptr + (b * P + offs_p[:, None]) * F
        for f0 in range(0, F, BLOCK_F):
            offs_f = f0 + tl.arange(0, BLOCK_F)
            f_ok = offs_f < F
            gt = tl.load(g_rows + offs_f[None, :], mask=p_ok[:, None] & f_ok[None, :], other=0.0)
            vt = tl.load(v_ptr + (k * F + offs_f[:, None]) * C + offs_c[None, :],
                         mask=f_ok[:, None] & c_ok[None, :], other=0.0)
            acc = _mm(gt, vt, acc, DOT, EMU)
            ek = tl.load(e_ptr + k * F + offs_f, mask=f_ok, other=0.0).to(ACC)
            ge += tl.sum(gt.to(ACC) * ek[None, :], axis=1)
        row = (b * K + k) * P + offs_p
        wk = tl.load(w_ptr + row, mask=p_ok, other=0.0).to(ACC)
        pc_ok = p_ok[:, None] & c_ok[None, :]
        hk = tl.load(h_ptr + row[:, None] * C + offs_c[None, :], mask=pc_ok, other=0.0).to(ACC)
        tl.store(gh_ptr + row[:, None] * C + offs_c[None, :], (acc * wk[:, None]).to(gh_ptr.dtype.element_ty),
                 mask=pc_ok)
        tl.store(gw_ptr + row, (tl.sum(hk * acc, axis=1) + ge).to(gw_ptr.dtype.element_ty), mask=p_ok)

    @triton.jit
    def _bwd_v_kernel(
        g_ptr, h_ptr, w_ptr, pv_ptr, pe_ptr,
        K, P, F, C, BP, CHUNK,
        DOT: tl.constexpr, ACC: tl.constexpr, EMU: tl.constexpr,
        BLOCK_C: tl.constexpr, BLOCK_F: tl.constexpr, BLOCK_R: tl.constexpr,
    ):
        pid_f = tl.program_id(0)
        k = tl.program_id(1)
        s = tl.program_id(2)
        offs_f = pid_f * BLOCK_F + tl.arange(0, BLOCK_F)
        offs_c = tl.arange(0, BLOCK_C)
        f_ok = offs_f < F
        c_ok = offs_c < C
        acc = tl.zeros((BLOCK_F, BLOCK_C), dtype=ACC)  # partial grad V_k
        eacc = tl.zeros((BLOCK_F,), dtype=ACC)  # partial grad e_k
        start = s.to(tl.int64) * CHUNK
        end = tl.minimum(start + CHUNK, BP)
        for r0 in range(start, end, BLOCK_R):
            r = r0 + tl.arange(0, BLOCK_R)
            r_ok = r < end
            bb = r // P
            row = (bb * K + k) * P + (r - bb * P)
            gt = tl.load(g_ptr + r[None, :] * F + offs_f[:, None], mask=f_ok[:, None] & r_ok[None, :],
                         other=0.0)
            wr = tl.load(w_ptr + row, mask=r_ok, other=0.0).to(ACC)
            a = tl.load(h_ptr + row[:, None] * C + offs_c[None, :], mask=r_ok[:, None] & c_ok[None, :],
                        other=0.0)
            a = (a.to(ACC) * wr[:, None]).to(h_ptr.dtype.element_ty)
            acc = _mm(gt, a, acc, DOT, EMU)
            eacc += tl.sum(gt.to(ACC) * wr[None, :], axis=1)
        out = (s * K + k).to(tl.int64) * F + offs_f
        tl.store(pv_ptr + out[:, None] * C + offs_c[None, :], acc, mask=f_ok[:, None] & c_ok[None, :])
        tl.store(pe_ptr + out, eacc, mask=f_ok)

    _prune_f = prune_blocks(("BLOCK_F", "F", 16))

    def _prune_fwd(configs, named_args, **kwargs):
        """:func:`_prune_f`, and in fp32 (DOT fp32) without :data:`_FWD_FP32_TOO_BIG`."""
        if kwargs.get("DOT", named_args.get("DOT")) == tl.float32:
            configs = [c for c in configs if _key(c) not in _FWD_FP32_TOO_BIG]
        return _prune_f(configs, named_args, **kwargs)

    def _key(c) -> tuple[int, int, int, int]:
        return (*c.kwargs.values(), c.num_warps, c.num_stages)

    # fp32 operand tiles are twice the bf16 ones: these three forward configs (BLOCK_P, BLOCK_F,
    # warps, stages) need more shared memory than an sm_90 block can have (227 KB = 232448 bytes):
    # compiled for sm_90 with Triton 3.6 (tests/aot_sm90.py), 237568, 237568 and 278528 bytes. The
    # autotuner would only skip them after a failed compile, on every first call. bf16 keeps them.
    _FWD_FP32_TOO_BIG = {(128, 128, 4, 4), (128, 256, 8, 3), (256, 128, 8, 3)}
    if interpreting():  # one small config: the interpreter runs every program in Python
        _FWD_CFG = configs(("BLOCK_P", "BLOCK_F"), [(32, 16)])
        _BWD_H_CFG = configs(("BLOCK_P", "BLOCK_F"), [(32, 16)])
        _BWD_V_CFG = configs(("BLOCK_F", "BLOCK_R"), [(16, 32)])
    else:
        # (tile, tile, warps, stages): a curated handful rather than a full product, to keep the
        # first-call tuning short. The forward tile is BLOCK_P x BLOCK_F with C as the dot depth;
        # the backward accumulators are BLOCK_P x C (grad h) and BLOCK_F x C (grad V).
        _FWD_CFG = configs(("BLOCK_P", "BLOCK_F"), [
            (128, 128, 8, 3), (128, 128, 4, 4), (128, 256, 8, 3), (64, 256, 4, 3),
            (128, 64, 4, 4), (64, 128, 4, 4), (64, 64, 4, 4), (256, 128, 8, 3)])
        _BWD_H_CFG = configs(("BLOCK_P", "BLOCK_F"), [
            (128, 64, 4, 4), (128, 64, 8, 3), (128, 128, 8, 3), (64, 64, 4, 4),
            (64, 128, 4, 3), (256, 64, 8, 3), (128, 32, 4, 4), (64, 32, 4, 4)])
        _BWD_V_CFG = configs(("BLOCK_F", "BLOCK_R"), [
            (128, 64, 4, 4), (128, 64, 8, 3), (128, 128, 8, 3), (64, 64, 4, 4),
            (64, 128, 4, 3), (256, 64, 8, 3), (128, 32, 4, 4), (64, 32, 4, 4)])

    # Tuning keys: the GEMM dims (not P, which only sets the grid) and the compile-time variants.
    _fwd_tuned = autotune(_fwd_kernel, _FWD_CFG, key=["K", "F", "C", "HAS_MASK", "HAS_T", "DOT"],
                          prune=_prune_fwd)
    _bwd_h_tuned = autotune(_bwd_h_kernel, _BWD_H_CFG, key=["K", "F", "C", "DOT"], prune=_prune_f)
    _bwd_v_tuned = autotune(_bwd_v_kernel, _BWD_V_CFG, key=["K", "F", "C", "DOT"], prune=_prune_f)


# ------------------------------------------------------------------------------------------------
# Launchers
# ------------------------------------------------------------------------------------------------

def _fp64_tiles(dtype: torch.dtype, **blocks: int) -> dict | None:
    """fp64 runs the plain kernels with these fixed small tiles (:func:`.launch.launch`'s
    ``fixed``); None (autotuned) for the other dtypes."""
    return {**blocks, "num_warps": 4} if dtype == torch.float64 else None


def _check(h, depth, feat_weight, feat_bias):
    B, K, P, C = h.shape
    F = feat_weight.shape[1]
    if depth.shape != (B, K, P) or feat_weight.shape != (K, F, C) or feat_bias.shape != (K, F):
        raise ValueError(f"fuse: inconsistent shapes h {tuple(h.shape)}, depth {tuple(depth.shape)}, "
                         f"feat_weight {tuple(feat_weight.shape)}, feat_bias {tuple(feat_bias.shape)}")
    if C > 256:
        raise ValueError(f"fuse (triton): C = {C} > 256 is not supported (one C tile per class)")
    return B, K, P, C, F


def _fuse_triton(h, depth, feat_weight, feat_bias, composition_mask, transparent):
    B, K, P, C, F = _check(h, depth, feat_weight, feat_bias)
    h = h.contiguous()
    depth = depth.contiguous()
    v = feat_weight.to(h.dtype).contiguous()
    e = feat_bias.to(h.dtype).contiguous()
    cm = composition_mask.to(torch.float32).contiguous() if composition_mask is not None else depth
    t = transparent.to(torch.float32).contiguous() if transparent is not None else depth
    out = torch.empty(B, P, F, device=h.device, dtype=h.dtype)
    m = torch.empty(B, K, P, device=h.device, dtype=depth.dtype)
    if out.numel() == 0 or m.numel() == 0:  # degenerate shapes: nothing to launch
        m.copy_(fusion_weights(depth, composition_mask, transparent)[1])
        return out.zero_(), m
    launch(_fwd_tuned, grid((P, "BLOCK_P"), (F, "BLOCK_F"), B), h, depth, v, e, cm, t, out, m, K, P, F, C,
           fixed=_fp64_tiles(h.dtype, BLOCK_P=16, BLOCK_F=16),
           HAS_MASK=composition_mask is not None, HAS_T=transparent is not None,
           **precision(h.dtype, dot=True), KP=max(16, triton.next_power_of_2(K)),
           BLOCK_C=max(16, triton.next_power_of_2(C)))
    return out, m


def _chunk(rows: int, splits: int) -> int:
    """Rows of each split-K range of the grad V reduction over ``rows`` = B·P (a multiple of
    ``_GRAN``)."""
    return triton.cdiv(triton.cdiv(rows, splits), _GRAN) * _GRAN


def _fusion_weights_vjp(depth, composition_mask, transparent, grad_w, grad_m):
    """Gradient of the depth given those of :func:`fusion_weights`' outputs (w, m): the chain rule
    through the transparency re-weighting, the composition mask and the softmax, written out
    (B·K·P work, in torch). Custom-op implementations run below the autograd dispatch key, so
    autograd over fusion_weights is not available here; the tests check this against it."""
    s = torch.softmax(depth, dim=1)
    m = s
    if composition_mask is not None:
        c = composition_mask[:, :, None].to(s.dtype)
        u = s * c
        z = u.sum(1, keepdim=True) + 1e-8
        m = u / z
    if transparent is None:
        g_m = grad_m + grad_w
    else:  # w = o / zo + m t with o = m (1 - t)
        t = transparent.to(m.dtype)[None, :, None]
        o = m * (1 - t)
        zo = o.sum(1, keepdim=True) + 1e-8
        g_o = grad_w / zo - (grad_w * o).sum(1, keepdim=True) / zo.square()
        g_m = grad_m + grad_w * t + g_o * (1 - t)
    g_s = g_m
    if composition_mask is not None:  # m = u / z with u = s c
        g_s = (g_m / z - (g_m * u).sum(1, keepdim=True) / z.square()) * c
    return s * (g_s - (g_s * s).sum(1, keepdim=True))


def _fuse_backward_triton(grad_feature, grad_m, h, depth, feat_weight, feat_bias, composition_mask,
                          transparent, splits: int | None = None):
    """First-order VJP of the fusion: (grad h, grad depth, grad feat_weight, grad feat_bias).
    ``splits`` forces the split-K count of the grad V reduction (tests)."""
    B, K, P, C, F = _check(h, depth, feat_weight, feat_bias)
    acc_t = accumulator(h.dtype)
    h = h.contiguous()
    g = grad_feature.to(h.dtype).contiguous()
    v = feat_weight.to(h.dtype).contiguous()
    e = feat_bias.to(h.dtype).contiguous()
    w, _ = fusion_weights(depth.to(acc_t), composition_mask, transparent)
    w_c = w.contiguous()
    grad_h = torch.empty_like(h)
    grad_w = torch.empty(B, K, P, device=h.device, dtype=acc_t)
    rows = B * P
    if rows == 0 or K == 0:
        zeros = torch.zeros_like
        return zeros(h), zeros(depth), zeros(feat_weight), zeros(feat_bias)
    kp = {"BLOCK_C": max(16, triton.next_power_of_2(C)), **precision(h.dtype, dot=True)}

    launch(_bwd_h_tuned, grid((P, "BLOCK_P"), K, B), g, h, v, e, w_c, grad_h, grad_w, K, P, F, C,
           fixed=_fp64_tiles(h.dtype, BLOCK_P=16, BLOCK_F=16), **kp)

    if splits is None:  # about 4 programs per SM, each a row range of one (F tile of 128, class)
        chunk = _chunk(rows, split_count(h.device, K * triton.cdiv(F, 128), triton.cdiv(rows, _GRAN), 4))
        splits = triton.cdiv(rows, chunk)
    else:
        chunk = _chunk(rows, splits)
    part_v = torch.empty(splits, K, F, C, device=h.device, dtype=acc_t)
    part_e = torch.empty(splits, K, F, device=h.device, dtype=acc_t)
    launch(_bwd_v_tuned, grid((F, "BLOCK_F"), K, splits), g, h, w_c, part_v, part_e, K, P, F, C, rows, chunk,
           fixed=_fp64_tiles(h.dtype, BLOCK_F=16, BLOCK_R=16), **kp)
    grad_v = part_v.sum(0).to(feat_weight.dtype)
    grad_e = part_e.sum(0).to(feat_bias.dtype)

    grad_d = _fusion_weights_vjp(depth.to(acc_t), composition_mask, transparent, grad_w, grad_m.to(acc_t))
    return grad_h, grad_d.to(depth.dtype), grad_v, grad_e


# ------------------------------------------------------------------------------------------------
# Custom ops and autograd
# ------------------------------------------------------------------------------------------------

@torch.library.custom_op("ssgan::fuse", mutates_args=())
def _fuse_op(h: torch.Tensor, depth: torch.Tensor, feat_weight: torch.Tensor, feat_bias: torch.Tensor,
             composition_mask: torch.Tensor | None, transparent: torch.Tensor | None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    return _fuse_triton(h, depth, feat_weight, feat_bias, composition_mask, transparent)


@_fuse_op.register_fake
def _(h, depth, feat_weight, feat_bias, composition_mask, transparent):
    B, K, P, _ = h.shape
    return h.new_empty(B, P, feat_weight.shape[1]), depth.new_empty(B, K, P)


@torch.library.custom_op("ssgan::fuse_backward", mutates_args=())
def _fuse_backward_op(
    grad_feature: torch.Tensor,
    grad_m: torch.Tensor,
    h: torch.Tensor,
    depth: torch.Tensor,
    feat_weight: torch.Tensor,
    feat_bias: torch.Tensor,
    composition_mask: torch.Tensor | None,
    transparent: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return _fuse_backward_triton(grad_feature, grad_m, h, depth, feat_weight, feat_bias, composition_mask,
                                 transparent)


@_fuse_backward_op.register_fake
def _(grad_feature, grad_m, h, depth, feat_weight, feat_bias, composition_mask, transparent):
    empty = torch.empty_like
    return empty(h), empty(depth), empty(feat_weight), empty(feat_bias)


def _fuse_setup(ctx, inputs, output):
    """Saves every input (both ops: ``ssgan::fuse`` and ``ssgan::fuse_backward``)."""
    ctx.save_for_backward(*inputs)


def _fuse_grad(ctx, grad_feature, grad_m):
    h, depth, feat_weight, feat_bias, composition_mask, transparent = ctx.saved_tensors
    B, K, P, _ = h.shape
    if grad_feature is None:
        grad_feature = h.new_zeros(B, P, feat_weight.shape[1])
    if grad_m is None:
        grad_m = torch.zeros_like(depth)
    grads = torch.ops.ssgan.fuse_backward(grad_feature, grad_m, h, depth, feat_weight, feat_bias,
                                          composition_mask, transparent)
    return (*grads, None, None)


_fuse_op.register_autograd(_fuse_grad, setup_context=_fuse_setup)


def _fuse_backward_grad(ctx, gg_h, gg_depth, gg_weight, gg_bias):
    """Double backward through the reference maths: differentiate the VJP of fuse_reference."""
    saved = ctx.saved_tensors
    diff, (composition_mask, transparent) = saved[:6], saved[6:]
    with torch.enable_grad():
        xs = [x.detach().requires_grad_(True) for x in diff]
        g, gm, h, depth, weight, bias = xs
        feature, m = fuse_reference(h, depth, weight, bias, composition_mask, transparent)
        first = torch.autograd.grad((feature, m), (h, depth, weight, bias), (g, gm), create_graph=True)
        ggs = [torch.zeros_like(f) if gg is None else gg
               for f, gg in zip(first, (gg_h, gg_depth, gg_weight, gg_bias), strict=True)]
        out = torch.autograd.grad(first, xs, ggs, allow_unused=True)
    return (*[torch.zeros_like(x) if o is None else o for x, o in zip(xs, out, strict=True)], None, None)


_fuse_backward_op.register_autograd(_fuse_backward_grad, setup_context=_fuse_setup)
