"""The ``ssgan`` command line and the editing functions behind it, run in-process on tiny models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import OFFICIAL_CFG, official_pt, read_png
from PIL import Image

from ssgan import SemanticGenerator, preset
from ssgan import visualize as V
from ssgan.checkpoint import load_checkpoint, save_checkpoint
from ssgan.cli import main
from ssgan.edit import editing as E

CFG = preset("tiny")
K, SIZE, NL, D = CFG.seg_dim, CFG.size, CFG.n_latent, CFG.style_dim


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ck") / "tiny.safetensors"
    return save_checkpoint(path, CFG, g_ema=SemanticGenerator(CFG), step=7, meta={"kimg": 0.1})


@pytest.fixture(scope="module")
def G(ckpt):
    return load_checkpoint(ckpt).g_ema


@pytest.fixture(scope="module")
def samples(ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("gen")
    assert main(["generate", str(ckpt), "--outdir", str(out), "-n", "3", "--batch", "2",
                 "--device", "cpu", "--truncation", "0.7", "--seed", "4", "--quiet"]) == 0
    return out


def _figure(path, height: int, width: int) -> np.ndarray:
    """A figure with a class legend beneath: its top ``height`` rows are the figure proper."""
    img = read_png(path)
    assert img.shape[1] == width and img.shape[0] > height + 10, img.shape
    assert (img[height:] != 255).any()  # the legend: swatches and names
    return img[:height]


# ----- generate ---------------------------------------------------------------------------------
def test_generate_files(samples, G):
    for i in range(3):
        assert read_png(samples / "img" / f"{i:06d}.png").shape == (SIZE, SIZE, 3)
        mask = read_png(samples / "mask" / f"{i:06d}.png")
        assert mask.shape == (SIZE, SIZE, 3)
        assert {tuple(c) for c in mask.reshape(-1, 3)} <= {tuple(c) for c in V.PALETTE[:K]}
        latent = np.load(samples / "latent" / f"{i:06d}.npy")
        assert latent.shape == (NL, D) and latent.dtype == np.float32
        # Compact W+ of a plain sample: one truncated w repeated n_latent times.
        assert np.array_equal(latent, np.broadcast_to(latent[:1], latent.shape))
        # Fed back as a latent, it reproduces the saved image exactly (fixed noise).
        out = E.render(G, E.as_latent(latent, G))
        assert np.array_equal(V.to_uint8(out.rgb)[0], read_png(samples / "img" / f"{i:06d}.png"))
    assert not (samples / "img" / "000003.png").exists()
    # grid: 3 images in a row, their masks beneath, 2-pixel gaps.
    _figure(samples / "grid.png", 2 * SIZE + 2, 3 * SIZE + 4)


def test_generate_is_batch_independent_and_truncation_shrinks(G):
    a = [s.latent for s in E.generate(G, 3, seed=4, truncation=0.7, batch=1)]
    b = [s.latent for s in E.generate(G, 3, seed=4, truncation=0.7, batch=3)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    full = [s.latent for s in E.generate(G, 3, seed=4, truncation=1.0, batch=3)]
    mean = E.mean_w(G, 4).cpu().numpy()
    for t, f in zip(a, full, strict=True):  # w_t − w̄ = 0.7 (w − w̄)
        np.testing.assert_allclose(t[0] - mean[0], 0.7 * (f[0] - mean[0]), rtol=1e-4, atol=1e-5)


# ----- convert / info ---------------------------------------------------------------------------


def test_convert_then_generate(tmp_path, capsys):
    G = official_pt(tmp_path / "release.pt")
    dst = tmp_path / "conv.safetensors"
    assert main(["convert", str(tmp_path / "release.pt"), "--out", str(dst)]) == 0
    assert main(["info", str(dst)]) == 0
    text = capsys.readouterr().out
    assert "sections: g_ema, d" in text and "seg_dim: 3" in text and "channel_max: 512" in text
    assert main(["info", str(tmp_path / "release.pt")]) == 0
    assert "official format" in capsys.readouterr().out
    out = tmp_path / "gen"
    assert main(["generate", str(dst), "--outdir", str(out), "-n", "2", "--device", "cpu", "--quiet"]) == 0
    latent = np.load(out / "latent" / "000001.npy")
    assert latent.shape == (OFFICIAL_CFG.n_latent, 32)
    expected = V.to_uint8(E.render(G, torch.from_numpy(latent)[None]).rgb)[0]
    assert np.array_equal(read_png(out / "img" / "000001.png"), expected)


def test_info(ckpt, capsys):
    assert main(["info", str(ckpt)]) == 0
    text = capsys.readouterr().out
    assert "sections: g_ema" in text and "step: 7" in text and "size: 32" in text and '"kimg": 0.1' in text


# ----- mix --------------------------------------------------------------------------------------
def _mix(ckpt, samples, out, classes, part, capsys, ref="000001"):
    argv = ["mix", str(ckpt), "--source", str(samples / "latent" / "000000.npy"),
            "--reference", str(samples / "latent" / f"{ref}.npy"), "--classes", classes, "--part", part,
            "--outdir", str(out), "--device", "cpu"]
    assert main(argv) == 0
    return capsys.readouterr().out


def test_mix_all_classes_gives_reference(ckpt, samples, tmp_path, capsys):
    text = _mix(ckpt, samples, tmp_path, ",".join(map(str, range(K))), "all", capsys)
    assert "inside" in text and "outside" in text
    ref = np.load(samples / "latent" / "000001.npy")
    src = np.load(samples / "latent" / "000000.npy")
    result = np.load(tmp_path / "result.npy")
    # Every class code comes from the reference; the base codes stay the source's.
    base = CFG.base_layers
    assert np.array_equal(result[base:], ref[base:]) and np.array_equal(result[:base], src[:base])
    _figure(tmp_path / "mix.png", 2 * SIZE + 2, 3 * SIZE + 4)
    assert read_png(tmp_path / "diff.png").shape == (SIZE, SIZE, 3)


def test_mix_with_itself_changes_nothing(ckpt, samples, tmp_path, capsys):
    text = _mix(ckpt, samples, tmp_path, "1,2", "shape", capsys, ref="000000")
    assert "inside classes class1,class2: 0.000; outside: 0.000" in text
    assert not read_png(tmp_path / "diff.png").any()
    assert np.array_equal(np.load(tmp_path / "result.npy"), np.load(samples / "latent" / "000000.npy"))


def test_mix_function_replaces_exactly_the_chosen_codes(G, samples):
    src = np.load(samples / "latent" / "000000.npy")
    ref = np.load(samples / "latent" / "000002.npy")
    for part, offsets in (("shape", [0]), ("texture", [1]), ("all", [0, 1])):
        res = E.mix(G, src, ref, [2], part)
        changed = [i for i in range(NL) if not np.array_equal(res["latent"][0, i], src[i])]
        assert changed == [CFG.base_layers + 4 + o for o in offsets]
        d, region = res["diff_values"], res["region"]
        np.testing.assert_allclose(res["inside"], d[region].mean() if region.any() else np.nan, rtol=1e-5)
        np.testing.assert_allclose(res["outside"], d[~region].mean() if (~region).any() else np.nan,
                                   rtol=1e-5)
        assert res["diff"].shape == (1, SIZE, SIZE, 3)


# ----- components -------------------------------------------------------------------------------
def test_components(ckpt, samples, tmp_path, G):
    assert main(["components", str(ckpt), "--latent", str(samples / "latent" / "000000.npy"),
                 "--outdir", str(tmp_path), "--device", "cpu"]) == 0
    _figure(tmp_path / "components.png", 3 * SIZE + 4, K * SIZE + 2 * (K - 1))
    assert main(["components", str(ckpt), "--seed", "3", "--outdir", str(tmp_path / "s"),
                 "--device", "cpu"]) == 0
    assert (tmp_path / "s" / "components.png").exists()

    latent = np.load(samples / "latent" / "000000.npy")
    renders = E.composition_renders(G, latent)
    assert len(renders) == K
    # Background only: the coarse mask 2m − 1 is +1 for class 0 and −1 elsewhere.
    torch.testing.assert_close(renders[0].coarse[:, 0], torch.ones_like(renders[0].coarse[:, 0]))
    torch.testing.assert_close(renders[0].coarse[:, 1:], -torch.ones_like(renders[0].coarse[:, 1:]))
    # All classes enabled: the plain render (the mask only renormalises m by Σm + 1e-8).
    plain = E.render(G, E.as_latent(latent, G))
    torch.testing.assert_close(renders[-1].rgb, plain.rgb, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(renders[-1].coarse, plain.coarse, atol=1e-5, rtol=1e-5)


# ----- interpolate ------------------------------------------------------------------------------
def test_interpolate(ckpt, samples, tmp_path, G):
    src = samples / "latent" / "000000.npy"
    assert main(["interpolate", str(ckpt), "--class", "1", "--part", "texture", "--latent", str(src),
                 "--frames", "4", "--outdir", str(tmp_path), "--device", "cpu", "--quiet"]) == 0
    frames = [read_png(tmp_path / f"frame_{i:03d}.png") for i in range(4)]
    assert not (tmp_path / "frame_004.png").exists()
    assert all(f.shape == (SIZE, 2 * SIZE + 2, 3) for f in frames)
    gif = Image.open(tmp_path / "interpolation.gif")
    assert gif.n_frames == 4 and gif.info.get("loop") == 0
    # Frame 0 is the source itself.
    first = E.render(G, E.as_latent(np.load(src), G))
    assert np.array_equal(frames[0][:, :SIZE], V.to_uint8(first.rgb)[0])

    codes = E.interpolation_latents(G, np.load(src), 1, "texture", 5, seed=3).cpu().numpy()
    moving = CFG.base_layers + 2 * 1 + 1
    others = [i for i in range(NL) if i != moving]
    assert np.array_equal(codes[:, others], np.broadcast_to(np.load(src)[others], codes[:, others].shape))
    steps = np.diff(codes[:, moving], axis=0)
    np.testing.assert_allclose(steps, np.broadcast_to(steps[:1], steps.shape), atol=1e-5)
    assert np.abs(steps).max() > 0


# ----- errors -----------------------------------------------------------------------------------
def test_errors(ckpt, samples, tmp_path, cli_error):
    lat = str(samples / "latent" / "000000.npy")
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((3, D), np.float32))
    msg = cli_error(["mix", str(ckpt), "--source", str(bad), "--reference", lat, "--classes", "1",
                     "--outdir", str(tmp_path)])
    assert f"has shape (3, {D}) but this model needs ({NL}, {D})" in msg
    msg = cli_error(["mix", str(ckpt), "--source", lat, "--reference", lat, "--classes", f"1,{K}",
                     "--outdir", str(tmp_path)])
    assert f"class index {K} is out of range" in msg
    msg = cli_error(["interpolate", str(ckpt), "--class", str(K), "--outdir", str(tmp_path)])
    assert "out of range" in msg
    msg = cli_error(["components", str(ckpt), "--latent", str(tmp_path / "none.npy"),
                     "--outdir", str(tmp_path)])
    assert "does not exist" in msg
    msg = cli_error(["generate", str(tmp_path / "missing.safetensors"), "--outdir", str(tmp_path)])
    assert "missing.safetensors does not exist" in msg
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 100)
    assert "junk.safetensors" in cli_error(["info", str(junk)])
    assert "mismatch" not in cli_error(["convert", str(junk), "--out", str(tmp_path / "o.safetensors")])
    cli_error(["frobnicate"])
    cli_error(["mix", str(ckpt), "--outdir", str(tmp_path)])  # missing required options
    assert not list(tmp_path.glob("*.png"))
