"""Loss terms against hand-computed values; Adam lazy corrections; EMA; training helpers."""

import math

import pytest
import torch
from torch import nn

from ssgan.train import losses
from ssgan.train import steps as T

# softplus(x) = log(1 + e^x), by hand:
SP_0 = 0.6931471805599453  # log 2
SP_M2 = 0.12692801104297263  # log(1 + e^-2)
SP_HALF = 0.9740769841801067  # log(1 + e^0.5)
SP_M1 = 0.31326168751822286  # log(1 + e^-1)


def test_d_logistic_loss():
    real = torch.tensor([[2.0], [0.0]])
    fake = torch.tensor([[0.5], [-1.0]])
    # mean(softplus(-real)) + mean(softplus(fake))
    expected = (SP_M2 + SP_0) / 2 + (SP_HALF + SP_M1) / 2
    assert losses.d_logistic_loss(real, fake).item() == pytest.approx(expected, rel=1e-6)


def test_g_nonsaturating_loss():
    fake = torch.tensor([[0.0], [2.0], [1.0]])
    expected = (SP_0 + SP_M2 + SP_M1) / 3
    assert losses.g_nonsaturating_loss(fake).item() == pytest.approx(expected, rel=1e-6)


def test_r1_penalty_linear_d_and_graph():
    torch.manual_seed(1)
    a = torch.randn(3, 4, 4)
    b = torch.randn(2, 4, 4)
    w = torch.tensor(1.5, requires_grad=True)
    x = torch.randn(5, 3, 4, 4, requires_grad=True)
    m = torch.randn(5, 2, 4, 4, requires_grad=True)
    # D(x, m) = w · Σ(a·x) + Σ(b·m) per sample: ∇x = w·a, ∇m = b for every sample
    pred = (w * (a * x).sum((1, 2, 3)) + (b * m).sum((1, 2, 3)))[:, None]
    r1_x, r1_m = losses.r1_penalty(pred, [x, m])
    assert r1_x.item() == pytest.approx(1.5**2 * a.pow(2).sum().item(), rel=1e-5)
    assert r1_m.item() == pytest.approx(b.pow(2).sum().item(), rel=1e-5)
    r1_x.backward()  # create_graph: d(w²|a|²)/dw = 2w|a|²
    assert w.grad.item() == pytest.approx(2 * 1.5 * a.pow(2).sum().item(), rel=1e-5)


def test_r1_penalty_mean_over_batch():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    pred = x.pow(2).sum(1, keepdim=True)  # ∇ = 2x → |∇|² = 4|x|²: 20 and 100
    (r1,) = losses.r1_penalty(pred, [x])
    assert r1.item() == pytest.approx((20 + 100) / 2)


def test_mask_loss_by_hand():
    coarse = torch.tensor([[[[1.0, -1.0], [0.0, 0.5]]]])  # (1, 1, 2, 2)
    seg = torch.tensor([[[[1.0, 3.0, 0.0, 0.0],
                          [1.0, 3.0, 0.0, 0.0],
                          [4.0, 4.0, 2.0, 2.0],
                          [4.0, 4.0, 2.0, 0.0]]]])  # 2×2 block means: 2, 0, 4, 1.5
    expected = ((1 - 2) ** 2 + (-1 - 0) ** 2 + (0 - 4) ** 2 + (0.5 - 1.5) ** 2) / 4
    assert losses.mask_loss(coarse, seg).item() == pytest.approx(expected)


def test_path_length_penalty_linear_map():
    torch.manual_seed(2)
    B, N, Dm, H, W = 3, 4, 5, 2, 3
    A = torch.randn(N, Dm, H * W, requires_grad=True)
    latents = torch.randn(B, N, Dm, requires_grad=True)
    img = torch.einsum("bnd,ndp->bp", latents, A).view(B, 1, H, W)  # linear: J_n = A_n
    torch.manual_seed(7)
    pen, new_mean, lengths = losses.path_length_penalty(img, latents, torch.tensor(0.3), decay=0.1)
    torch.manual_seed(7)
    y = torch.randn(B, 1, H, W).view(B, H * W) / math.sqrt(H * W)  # the same noise draw
    grad = torch.einsum("ndp,bp->bnd", A.detach(), y)  # A_n y for every sample and code
    expect_len = grad.pow(2).sum(2).mean(1).sqrt()
    torch.testing.assert_close(lengths, expect_len)
    expect_mean = 0.3 + 0.1 * (expect_len.mean() - 0.3)
    assert new_mean.item() == pytest.approx(expect_mean.item(), rel=1e-6)
    assert not new_mean.requires_grad
    assert pen.item() == pytest.approx((expect_len - expect_mean).pow(2).mean().item(), rel=1e-5)
    pen.backward()  # create_graph=True: the penalty reaches the map's parameters
    assert A.grad is not None and A.grad.abs().sum() > 0


def test_path_length_scaled_identity_and_decay_sequence():
    # img = c·w (D = H·W, one code): ℓ = c·|y|; the mean follows ā ← ā + decay·(mean ℓ − ā)
    c, B, H = 2.0, 2, 4
    w = torch.randn(B, 1, H * H, requires_grad=True)
    mean = torch.tensor(0.0)
    for _ in range(3):
        img = (c * w).view(B, 1, H, H)
        torch.manual_seed(3)
        y = torch.randn(B, 1, H, H) / H
        torch.manual_seed(3)
        _, new, lengths = losses.path_length_penalty(img, w, mean, decay=0.01)
        torch.testing.assert_close(lengths, c * y.view(B, -1).norm(dim=1))
        assert new.item() == pytest.approx((mean + 0.01 * (lengths.mean() - mean)).item(), rel=1e-6)
        mean = new


def test_adam_lazy_corrections():
    G, D = nn.Linear(2, 2), nn.Linear(2, 1)
    g_opt, d_opt = T.make_optimizers(G, D, T.TrainConfig())
    g, d = g_opt.param_groups[0], d_opt.param_groups[0]
    assert g["lr"] == pytest.approx(0.002 * 4 / 5)  # 0.0016
    assert d["lr"] == pytest.approx(0.002 * 16 / 17)  # 0.0018823529
    assert g["betas"][0] == 0.0 and d["betas"][0] == 0.0
    assert g["betas"][1] == pytest.approx(0.9919919678)  # 0.99 ** 0.8
    assert d["betas"][1] == pytest.approx(0.9905854917)  # 0.99 ** (16/17)
    cfg = T.TrainConfig(lr=0.01, betas=(0.5, 0.9), g_reg_every=1)
    g_opt, _ = T.make_optimizers(G, D, cfg)
    assert g_opt.param_groups[0]["lr"] == pytest.approx(0.005)
    assert g_opt.param_groups[0]["betas"] == pytest.approx((0.5**0.5, 0.9**0.5))


def test_train_config_defaults():
    tc = T.TrainConfig()
    for batch, cur_nimg in ((32, 0), (8, 10**6), (4, 12)):  # no ramp-up: the official fixed decay
        assert T.ema_beta(tc, batch, cur_nimg) == pytest.approx(0.5 ** (32 / (10 * 1000)), rel=1e-12)
    assert T.ema_beta(tc, 32, 0) == pytest.approx(0.9977843871)
    assert (tc.r1_img, tc.r1_seg, tc.d_reg_every, tc.g_reg_every) == (10, 1000, 16, 4)
    assert (tc.path_regularize, tc.path_batch_shrink, tc.path_decay) == (0.5, 2, 0.01)
    assert (tc.mixing, tc.lambda_mask, tc.lr, tc.betas) == (0.3, 100, 0.002, (0.0, 0.99))
    with pytest.raises(ValueError, match="d_reg_every"):
        T.TrainConfig(d_reg_every=0)
    for bad, flag in (({"lr": -1.0}, "--lr"), ({"betas": (1.5, 0.99)}, "--betas"),
                      ({"betas": (0.0, 1.0)}, "--betas"), ({"mixing": 2.0}, "--mixing"),
                      ({"ema_kimg": 0.0}, "--ema-kimg"), ({"ema_rampup": -1.0}, "--ema-rampup")):
        with pytest.raises(ValueError, match=flag):
            T.TrainConfig(**bad)
    T.TrainConfig(lr=0.0)  # lr 0 (weights stay) is allowed, as by Adam


class _WithBuffer(nn.Module):
    def __init__(self, p, b):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(p))
        self.register_buffer("noise", torch.tensor(b))


def test_ema_update_values():
    ema, g = _WithBuffer([1.0, -2.0], [0.0]), _WithBuffer([3.0, 2.0], [5.0])
    T.ema_update(ema, g, 0.9)
    torch.testing.assert_close(ema.w.data, torch.tensor([0.9 * 1 + 0.1 * 3, 0.9 * -2 + 0.1 * 2]))
    torch.testing.assert_close(ema.noise, torch.tensor([0.0]))  # buffers: copy_buffers, once
    T.ema_update(ema, g, 0.0)
    torch.testing.assert_close(ema.w.data, g.w.data)
    T.ema_update(ema, _WithBuffer([7.0, 7.0], [1.0]), 1.0)
    torch.testing.assert_close(ema.w.data, g.w.data)  # decay 1 keeps the average
    T.copy_buffers(ema, g)
    torch.testing.assert_close(ema.noise, torch.tensor([5.0]))
    torch.testing.assert_close(ema.w.data, g.w.data)


def test_ema_beta_rampup_values():
    tc = T.TrainConfig(ema_kimg=10, ema_rampup=0.05)
    assert T.ema_beta(tc, 8, 0) == 0  # first step: G-EMA = G
    assert T.ema_beta(tc, 8, 8000) == pytest.approx(0.5 ** (8 / 400))  # horizon 5 % of 8000 images
    assert T.ema_beta(tc, 8, 10**6) == pytest.approx(0.5 ** (8 / 10000))  # capped at ema_kimg
    assert T.ema_beta(T.TrainConfig(ema_kimg=10), 8, 0) == pytest.approx(0.5 ** (8 / 10000))


def test_r1_auto():
    from ssgan.model.config import preset

    for name in ("celeba-256", "celeba-512"):
        assert T.r1_auto(preset(name), 32) == T.R1_PAPER == (10, 1000)
        assert T.r1_auto(preset(name), 8) == (10, 1000)
    img, seg = T.r1_auto(preset("tiny"), 8)
    assert img == pytest.approx(T.R1_PER_PIXEL * 32**2 / 8) and seg == pytest.approx(100 * img)
    custom = preset("celeba-256").replace(size=128)  # not a preset: scaled with size² / batch
    assert T.r1_auto(custom, 16)[0] == pytest.approx(4 * T.r1_auto(preset("tiny").replace(size=64), 16)[0])
    assert T.r1_auto(custom, 16)[0] == pytest.approx(2 * T.r1_auto(custom, 32)[0])


def test_sample_z_reproducible_and_mixing():
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a = [T.sample_z(3, 8, 0.5, g1) for _ in range(20)]
    b = [T.sample_z(3, 8, 0.5, g2) for _ in range(20)]
    assert [len(x) for x in a] == [len(x) for x in b]
    assert {len(x) for x in a} == {1, 2}  # both outcomes occur at p = 0.5
    for x, y in zip(a, b, strict=True):
        for u, v in zip(x, y, strict=True):
            torch.testing.assert_close(u, v)
    assert all(len(T.sample_z(2, 4, 0.0, g1)) == 1 for _ in range(5))
    assert all(len(T.sample_z(2, 4, 1.0, g1)) == 2 for _ in range(5))
    assert T.sample_z(2, 4, 1.0, g1)[0].shape == (2, 4)
