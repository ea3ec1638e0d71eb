"""Checkpoints: safetensors round trips, official .pt files, conversion, clear errors, atomic writes."""

from __future__ import annotations

import argparse
import collections
import os
import struct

import pytest
import safetensors.torch
import torch
from conftest import OFFICIAL_CFG

from ssgan import DualBranchDiscriminator, SemanticGenerator, preset
from ssgan.checkpoint import (
    Checkpoint,
    CheckpointError,
    convert_official,
    inspect_checkpoint,
    load_checkpoint,
    save_checkpoint,
)

CFG = preset("tiny")


def _official_args(cfg=CFG, **extra) -> argparse.Namespace:
    """The official training args (field names of the official train.py) for ``cfg``."""
    return argparse.Namespace(
        dataset="/data/celeba", inception="inception.pkl", checkpoint_dir="./output/", ckpt=None,
        iter=200001, batch=4, n_sample=16, size=cfg.size, r1_img=10.0, r1_seg=1000.0,
        path_regularize=0.5, path_batch_shrink=2, d_reg_every=16, g_reg_every=4, mixing=0.3,
        lr=0.002, channel_multiplier=cfg.channel_multiplier, seg_dim=cfg.seg_dim, aug=False,
        local_layers=cfg.local_layers, base_layers=cfg.base_layers, depth_layers=cfg.depth_layers,
        local_channel=cfg.local_channel, coarse_channel=cfg.coarse_channel, coarse_size=cfg.coarse_size,
        min_feat_size=cfg.min_feat_size, residual_refine=cfg.residual_refine,
        detach_texture=cfg.detach_texture, transparent_dims=list(cfg.transparent_dims),
        lambda_mask=100.0, num_workers=8, local_rank=0, n_gpu=1, distributed=False,
        latent=cfg.style_dim, n_mlp=cfg.n_mlp, start_iter=0, **extra)


def _render(G: SemanticGenerator, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    z = torch.randn(2, G.style_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return G([z], randomize_noise=False)


def _assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert sa[k].dtype == sb[k].dtype, k
        assert torch.equal(sa[k], sb[k]), k


def _train_steps(G, D, g_opt, d_opt, steps: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        z = torch.randn(2, G.style_dim, generator=gen)
        g_opt.zero_grad()
        d_opt.zero_grad()
        rgb, seg = G([z], randomize_noise=False)
        D(rgb, seg).mean().backward()
        g_opt.step()
        d_opt.step()


@pytest.fixture(scope="module")
def trained():
    """A tiny G, its EMA copy and D after a few Adam steps."""
    torch.manual_seed(0)
    G, D = SemanticGenerator(CFG), DualBranchDiscriminator(CFG)
    g_ema = SemanticGenerator(CFG).eval()
    g_opt = torch.optim.Adam(G.parameters(), lr=2e-3 * 0.8, betas=(0.0, 0.99 ** 0.8))
    d_opt = torch.optim.Adam(D.parameters(), lr=2e-3 * 16 / 17, betas=(0.0, 0.99 ** (16 / 17)))
    _train_steps(G, D, g_opt, d_opt, 3, seed=0)
    with torch.no_grad():
        for pe, p in zip(g_ema.parameters(), G.parameters(), strict=True):
            pe.lerp_(p, 0.3)
    return G, g_ema, D, g_opt, d_opt


def test_round_trip_bit_exact(tmp_path, trained):
    G, g_ema, D, g_opt, d_opt = trained
    rng = torch.get_rng_state()
    path = save_checkpoint(tmp_path / "ck.safetensors", CFG, g_ema=g_ema, g=G, d=D, g_optim=g_opt,
                           d_optim=d_opt, step=1234, tensors={"rng.cpu": rng, "half": torch.ones(3).half()},
                           meta={"kimg": 1.5, "path_mean": 0.25, "note": "x"})
    ck = load_checkpoint(path)
    assert isinstance(ck, Checkpoint) and ck.source == "ssgan" and ck.config == CFG
    assert ck.sections == ["g_ema", "g", "d", "g_optim", "d_optim"]
    assert ck.step == 1234 and ck.meta == {"kimg": 1.5, "path_mean": 0.25, "note": "x"}
    assert ck.tensors["rng.cpu"].dtype == torch.uint8 and torch.equal(ck.tensors["rng.cpu"], rng)
    assert ck.tensors["half"].dtype == torch.float16
    assert not ck.g_ema.training
    _assert_same_state(ck.g_ema, g_ema)
    _assert_same_state(ck.g, G)
    _assert_same_state(ck.d, D)
    # Optimiser state tensors, Adam's tensor step included, keep values and dtypes.
    for saved, orig in ((ck.g_optim_state, g_opt.state_dict()), (ck.d_optim_state, d_opt.state_dict())):
        assert saved["param_groups"] == orig["param_groups"]
        assert saved["state"].keys() == orig["state"].keys()
        for i, per in orig["state"].items():
            for key, value in per.items():
                assert saved["state"][i][key].dtype == value.dtype
                assert torch.equal(saved["state"][i][key], value), (i, key)
    info = inspect_checkpoint(path)
    assert info["sections"] == ["g_ema", "g", "d", "g_optim", "d_optim"] and info["step"] == 1234
    assert info["parameters"]["d"] == sum(t.numel() for t in D.state_dict().values())


def test_resumed_adam_continues_identically(tmp_path):
    torch.manual_seed(3)
    G, D = SemanticGenerator(CFG), DualBranchDiscriminator(CFG)
    g_opt = torch.optim.Adam(G.parameters(), lr=2e-3, betas=(0.0, 0.99))
    d_opt = torch.optim.Adam(D.parameters(), lr=2e-3, betas=(0.0, 0.99))
    _train_steps(G, D, g_opt, d_opt, 2, seed=5)
    path = save_checkpoint(tmp_path / "ck.safetensors", CFG, g=G, d=D, g_optim=g_opt, d_optim=d_opt)
    ck = load_checkpoint(path)
    g_opt2 = torch.optim.Adam(ck.g.parameters(), lr=1.0, betas=(0.5, 0.5))  # overwritten by the state
    d_opt2 = torch.optim.Adam(ck.d.parameters(), lr=1.0, betas=(0.5, 0.5))
    g_opt2.load_state_dict(ck.g_optim_state)
    d_opt2.load_state_dict(ck.d_optim_state)
    _train_steps(G, D, g_opt, d_opt, 2, seed=9)
    _train_steps(ck.g, ck.d, g_opt2, d_opt2, 2, seed=9)
    _assert_same_state(ck.g, G)
    _assert_same_state(ck.d, D)


def test_shared_storage_and_views_are_saved(tmp_path):
    base = torch.arange(12.0)
    state = {"a": base, "b": base, "view": base[2:5], "t": base.view(3, 4).t()}
    path = save_checkpoint(tmp_path / "s.safetensors", CFG, tensors=state)
    ck = load_checkpoint(path)
    for k, v in state.items():
        assert torch.equal(ck.tensors[k], v), k
    assert ck.g_ema is None and ck.sections == []


def _save_official(path, G, D, **extra):
    args = _official_args(G.config)
    torch.save({"g_ema": G.state_dict(), "d": D.state_dict(), "args": args, **extra}, path)
    return path


def test_official_pt_loads_strict_and_renders_identically(tmp_path):
    torch.manual_seed(7)
    G, D = SemanticGenerator(OFFICIAL_CFG).eval(), DualBranchDiscriminator(OFFICIAL_CFG)
    path = _save_official(tmp_path / "000140.pt", G, D)
    ck = load_checkpoint(path, config=OFFICIAL_CFG)
    assert ck.source == "official" and ck.config == OFFICIAL_CFG and ck.step == 140
    assert ck.g is None and ck.g_optim_state is None and ck.sections == ["g_ema", "d"]
    assert ck.meta["official_args"]["dataset"] == "/data/celeba"
    _assert_same_state(ck.g_ema, G)
    _assert_same_state(ck.d, D)
    for a, b in zip(_render(G), _render(ck.g_ema), strict=True):
        assert torch.equal(a, b)

    out = convert_official(path, tmp_path / "conv" / "c.safetensors")
    ck2 = load_checkpoint(out)
    assert ck2.source == "ssgan" and ck2.config == OFFICIAL_CFG and ck2.step == 140
    _assert_same_state(ck2.g_ema, G)
    _assert_same_state(ck2.d, D)
    for a, b in zip(_render(G), _render(ck2.g_ema), strict=True):
        assert torch.equal(a, b)


def test_legacy_pickle_pt_loads(tmp_path):
    G, D = SemanticGenerator(OFFICIAL_CFG).eval(), DualBranchDiscriminator(OFFICIAL_CFG)
    path = tmp_path / "legacy.pth"
    torch.save({"g_ema": G.state_dict(), "d": D.state_dict(), "args": _official_args(OFFICIAL_CFG)}, path,
               _use_new_zipfile_serialization=False)
    assert path.read_bytes()[:1] == b"\x80"
    ck = load_checkpoint(path)
    assert ck.source == "official" and ck.step is None
    _assert_same_state(ck.g_ema, G)


@pytest.mark.slow
def test_official_training_checkpoint_with_optimisers_converts(tmp_path):
    cfg = OFFICIAL_CFG
    G, D, g_ema = SemanticGenerator(cfg), DualBranchDiscriminator(cfg), SemanticGenerator(cfg)
    g_opt = torch.optim.Adam(G.parameters(), lr=2e-3, betas=(0.0, 0.99))
    d_opt = torch.optim.Adam(D.parameters(), lr=2e-3, betas=(0.0, 0.99))
    for opt in (g_opt, d_opt):  # one step on made-up gradients fills the Adam state
        for group in opt.param_groups:
            for p in group["params"]:
                p.grad = torch.randn_like(p)
        opt.step()
    src = tmp_path / "ck.pt"
    torch.save({"g": G.state_dict(), "d": D.state_dict(), "g_ema": g_ema.state_dict(),
                "g_optim": g_opt.state_dict(), "d_optim": d_opt.state_dict(),
                "args": _official_args(cfg)}, src)
    out = load_checkpoint(convert_official(src, tmp_path / "ck.safetensors"))
    assert out.sections == ["g_ema", "g", "d", "g_optim", "d_optim"] and out.step is None
    _assert_same_state(out.g, G)
    for i, per in g_opt.state_dict()["state"].items():
        for key, value in per.items():
            assert torch.equal(out.g_optim_state["state"][i][key], value)


# ----- errors ---------------------------------------------------------------------------------
def _error(path, **kw) -> str:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, **kw)
    msg = str(info.value)
    assert str(path) in msg and "\n" not in msg
    return msg


def test_truncated_safetensors(tmp_path):
    path = save_checkpoint(tmp_path / "ck.safetensors", CFG, g_ema=SemanticGenerator(CFG))
    data = path.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    assert "truncated" in _error(cut)
    # Header intact, tensor data cut short.
    n = struct.unpack("<Q", data[:8])[0]
    cut.write_bytes(data[: 8 + n + 10])
    _error(cut)


def test_garbage_files(tmp_path):
    rnd = tmp_path / "random.safetensors"
    rnd.write_bytes(bytes(range(7, 250)) * 40)
    assert "not a safetensors file" in _error(rnd)
    txt = tmp_path / "notes.pt"
    txt.write_text("these are my notes, not a checkpoint\n")
    assert "not a PyTorch file" in _error(txt)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    assert "empty" in _error(empty)
    assert "does not exist" in _error(tmp_path / "nope.safetensors")
    zipped = tmp_path / "bad.pt"
    zipped.write_bytes(b"PK\x03\x04" + b"\0" * 50)
    _error(zipped)
    # A plain safetensors file without our metadata, and an unknown format version.
    plain = tmp_path / "plain.safetensors"
    safetensors.torch.save_file({"x": torch.zeros(2)}, plain)
    assert "not an ssgan checkpoint" in _error(plain)
    future = tmp_path / "future.safetensors"
    safetensors.torch.save_file({"x": torch.zeros(2)}, future,
                                metadata={"format": "ssgan", "format_version": "9", "config": "{}"})
    assert "format version '9'" in _error(future)
    # A renamed file is recognised by its content.
    renamed = tmp_path / "ck.pt"
    save_checkpoint(renamed, CFG, tensors={"x": torch.ones(1)})
    assert torch.equal(load_checkpoint(renamed).tensors["x"], torch.ones(1))


class EvilDict(collections.OrderedDict):
    pass


class _RunsCommand:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_with_disallowed_globals_is_refused(tmp_path):
    G = SemanticGenerator(CFG)
    evil = tmp_path / "evil.pt"
    torch.save({"g_ema": EvilDict(G.state_dict()), "args": _official_args()}, evil)
    msg = _error(evil)
    assert "EvilDict" in msg and "not allowed" in msg

    marker = tmp_path / "pwned"
    worse = tmp_path / "worse.pt"
    torch.save({"g_ema": G.state_dict(), "args": _official_args(), "x": _RunsCommand(marker)}, worse)
    msg = _error(worse)
    assert "posix.system" in msg and "not allowed" in msg
    assert not marker.exists()


def test_official_pt_without_args_or_generator(tmp_path):
    p = tmp_path / "noargs.pt"
    torch.save({"g_ema": SemanticGenerator(CFG).state_dict()}, p)
    assert "args" in _error(p)
    q = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(3)}, q)
    assert "not a SemanticStyleGAN checkpoint" in _error(q)
    r = tmp_path / "partial_args.pt"
    args = _official_args()
    del args.seg_dim
    torch.save({"g_ema": SemanticGenerator(CFG).state_dict(), "args": args}, r)
    assert "seg_dim" in _error(r)


def test_config_mismatch_names_fields(tmp_path):
    path = save_checkpoint(tmp_path / "ck.safetensors", CFG, g_ema=SemanticGenerator(CFG))
    other = CFG.replace(seg_dim=6, local_layers=5)
    msg = _error(path, config=other)
    assert "trained with seg_dim=5, local_layers=4 but the model asks for seg_dim=6, local_layers=5" in msg
    official = _save_official(tmp_path / "off.pt", SemanticGenerator(OFFICIAL_CFG),
                              DualBranchDiscriminator(OFFICIAL_CFG))
    assert "channel_max=512" in _error(official, config=CFG)


def test_state_dict_mismatch(tmp_path):
    state = SemanticGenerator(CFG).state_dict()
    missing = dict(state)
    del missing["style.1.weight"]
    path = save_checkpoint(tmp_path / "m.safetensors", CFG, g_ema=missing)
    msg = _error(path)
    assert "1 missing (style.1.weight)" in msg and "'g_ema'" in msg
    extra = dict(state, **{"bogus.weight": torch.zeros(1)})
    extra["pos_embed.weights"] = torch.zeros(1, 2)
    msg = _error(save_checkpoint(tmp_path / "e.safetensors", CFG, g=extra))
    assert "unexpected (bogus.weight)" in msg and "mis-shaped (pos_embed.weights: file (1, 2)" in msg
    # The official path checks names the same way.
    off = tmp_path / "off.pt"
    torch.save({"g_ema": missing, "args": _official_args(OFFICIAL_CFG)}, off)
    with pytest.raises(CheckpointError, match="'g_ema' does not match the model"):  # narrower than its args
        convert_official(off, tmp_path / "never.safetensors")
    assert not (tmp_path / "never.safetensors").exists()


# ----- atomic writes ----------------------------------------------------------------------------
def test_failed_write_keeps_existing_checkpoint(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "ck.safetensors", CFG, tensors={"x": torch.arange(4)}, step=1)
    before = path.read_bytes()

    with pytest.raises(CheckpointError, match="not a tensor"):
        save_checkpoint(path, CFG, tensors={"x": "not a tensor"})
    with pytest.raises(CheckpointError, match="JSON"):
        save_checkpoint(path, CFG, meta={"bad": object()})

    def half_write(f, tensors, metadata):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr("ssgan.checkpoint.atomic_write.write_safetensors", half_write)
    with pytest.raises(CheckpointError) as info:
        save_checkpoint(path, CFG, tensors={"x": torch.zeros(4)}, step=2)
    assert str(path) in str(info.value) and "disk full" in str(info.value)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load_checkpoint(path).step == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.safetensors"]


def test_overwrite_leaves_no_temp_files(tmp_path):
    for step in range(3):
        path = save_checkpoint(tmp_path / "ck.safetensors", CFG, tensors={"x": torch.full((2,), step)},
                               step=step)
    assert load_checkpoint(path).step == 2
    assert [p.name for p in tmp_path.iterdir()] == ["ck.safetensors"]
