"""``ssgan invert``, ``direction`` and ``edit`` end to end on checkpoints from ``ssgan convert`` and
from a short ``train.py`` run, and their one-line errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import OFFICIAL_CFG, official_pt, read_png
from PIL import Image

from ssgan.checkpoint import load_checkpoint
from ssgan.cli import main
from ssgan.edit import directions as Dn
from ssgan.edit import editing as E
from ssgan.model import latents as L
from ssgan.train import loop as train

ROOT = Path(__file__).resolve().parents[1]
K, SIZE = OFFICIAL_CFG.seg_dim, OFFICIAL_CFG.size


def _photos_with_labels(G, folder: Path, n: int, seed: int) -> None:
    """n images rendered from random latents as photos/<i>.png and their index labels as labels/<i>.png."""
    out = E.render(G, E.sample_latents(G, n, seed=seed, truncation=0.8))
    for i, (rgb, seg) in enumerate(zip(E.V.to_uint8(out.rgb), out.seg.argmax(1).numpy().astype(np.uint8))):
        (folder / "photos").mkdir(parents=True, exist_ok=True)
        (folder / "labels").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(folder / "photos" / f"face{i}.png")
        Image.fromarray(seg, mode="L").save(folder / "labels" / f"face{i}.png")


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    d = tmp_path_factory.mktemp("inv")
    G = official_pt(d / "release.pt")
    assert main(["convert", str(d / "release.pt"), "--out", str(d / "conv.safetensors")]) == 0
    _photos_with_labels(G, d, 3, seed=1)
    return d


@pytest.fixture(scope="module")
def inverted(converted):
    """``--no-watermark``: the tests below compare the figures' pixels exactly (the watermark of
    invert's figures is tests/test_provenance.py's concern)."""
    d = converted
    assert main(["invert", str(d / "conv.safetensors"), "--images", str(d / "photos"), "--labels",
                 str(d / "labels"), "--outdir", str(d / "out"), "--steps", "6", "--finetune-steps", "2",
                 "--batch", "2", "--device", "cpu", "--quiet", "--no-watermark"]) == 0
    return d, d / "out"


@pytest.mark.slow
def test_invert_outputs(inverted, capsys):
    d, out = inverted
    for i in range(3):
        latent = np.load(out / "latent" / f"face{i}.npy")
        assert latent.shape == (OFFICIAL_CFG.n_latent, OFFICIAL_CFG.style_dim) and latent.dtype == np.float32
        # input | reconstruction | mask | given labels, 16 px tiles shown at 128 px
        recon = read_png(out / "recon" / f"face{i}.png")
        assert recon.shape == (128, 4 * 128 + 3 * 2, 3)
        assert np.array_equal(recon[::8, :128:8], read_png(d / "photos" / f"face{i}.png"))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["perceptual"].startswith("MS-SSIM") and metrics["mask_guidance"] is True
    assert metrics["config"]["steps"] == 6 and metrics["config"]["finetune_lr"] == 1e-4
    assert sorted(metrics["images"]) == ["face0", "face1", "face2"]
    for key in ("psnr", "ms_ssim", "mask_accuracy", "miou", "psnr_before_tuning"):
        values = [row[key] for row in metrics["images"].values()]
        assert metrics["mean"][key] == pytest.approx(np.mean(values))
    tuned = load_checkpoint(out / "generator.safetensors")
    assert tuned.config == OFFICIAL_CFG and tuned.g_ema is not None and tuned.meta["finetune_steps"] == 2
    # the tuned generator renders the saved latent into the saved reconstruction
    lat = torch.from_numpy(np.load(out / "latent" / "face1.npy"))[None]
    rgb = E.V.to_uint8(E.render(tuned.g_ema, lat).rgb)[0]
    assert np.array_equal(np.asarray(Image.fromarray(rgb).resize((128, 128), Image.NEAREST)),
                          read_png(out / "recon" / "face1.png")[:, 130:258])


@pytest.mark.slow
def test_inverted_latents_feed_mix_and_components(inverted, tmp_path, cli_error):
    d, out = inverted
    assert main(["mix", str(d / "conv.safetensors"), "--source", str(out / "latent" / "face0.npy"),
                 "--reference", str(out / "latent" / "face1.npy"), "--classes", "1", "--outdir",
                 str(tmp_path / "mix"), "--device", "cpu",
                 "--generator", str(out / "generator.safetensors")]) == 0
    figure = read_png(tmp_path / "mix" / "mix.png")  # source | reference | result over masks, then a legend
    assert figure.shape[1] == 3 * SIZE + 4 and figure.shape[0] > 2 * SIZE + 2
    assert main(["components", str(out / "generator.safetensors"),
                 "--latent", str(out / "latent" / "face2.npy"), "--outdir", str(tmp_path / "comp"),
                 "--device", "cpu"]) == 0
    # --generator with another configuration is refused
    other = tmp_path / "other.pt"
    official_pt(other, OFFICIAL_CFG.replace(style_dim=16))
    line = cli_error(["components", str(d / "conv.safetensors"), "--generator", str(other), "--outdir",
                      str(tmp_path / "x"), "--device", "cpu"])
    assert "style_dim" in line


@pytest.mark.slow
def test_direction_and_edit(inverted, tmp_path, capsys, cli_error):
    d, out = inverted
    csv = tmp_path / "attrs.csv"
    csv.write_text("name,smiling,old\nface0.png,1,no\nface1,0,yes\nface2,1,no\n")
    assert main(["direction", str(d / "conv.safetensors"), "--latents", str(out / "latent"),
                 "--attributes", str(csv), "--attribute", "smiling", "--classes", "1",
                 "--out", str(tmp_path / "smile.npy")]) == 0
    assert "3 latents (2 positive)" in capsys.readouterr().out
    direction = np.load(tmp_path / "smile.npy")
    assert direction.shape == (OFFICIAL_CFG.n_latent, OFFICIAL_CFG.style_dim)
    assert np.linalg.norm(direction) == pytest.approx(1, abs=1e-5)
    assert main(["edit", str(d / "conv.safetensors"), "--generator", str(out / "generator.safetensors"),
                 "--latent", str(out / "latent" / "face0.npy"), "--direction", str(tmp_path / "smile.npy"),
                 "--strength=-2,0,2", "--outdir", str(tmp_path / "edit"), "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "edited inside classes 1" in text and "strength +2:" in text
    source = np.load(out / "latent" / "face0.npy")
    moved = L.class_codes([1], "all", OFFICIAL_CFG)
    for i, s in enumerate((-2, 0, 2)):
        frame = np.load(tmp_path / "edit" / f"latent_{i:03d}.npy")
        np.testing.assert_allclose(frame, source + s * direction, atol=1e-6)
        assert np.array_equal(np.delete(frame, moved, 0), np.delete(source, moved, 0))
        assert read_png(tmp_path / "edit" / f"frame_{i:03d}.png").shape == (128, 2 * 128 + 2, 3)  # enlarged
    assert read_png(tmp_path / "edit" / "diff.png").shape == (128, 3 * 128 + 4, 3)
    assert read_png(tmp_path / "edit" / "edit.png").shape == (3 * 128 + 4, 2 * 128 + 2, 3)
    # errors name the file / column
    assert "no column 'happy'" in cli_error(["direction", str(d / "conv.safetensors"),
                                             "--latents", str(out / "latent"), "--attributes", str(csv),
                                             "--attribute", "happy", "--out", str(tmp_path / "x.npy")])
    np.save(tmp_path / "bad.npy", np.zeros((3, 3), np.float32))
    assert "bad.npy has shape (3, 3)" in cli_error(["edit", str(d / "conv.safetensors"), "--latent",
                                                    str(out / "latent" / "face0.npy"), "--direction",
                                                    str(tmp_path / "bad.npy"), "--outdir",
                                                    str(tmp_path / "e"), "--device", "cpu"])


@pytest.mark.slow
def test_invert_bad_input(converted, tmp_path, capsys, cli_error):
    d = converted
    ck = str(d / "conv.safetensors")

    def invert(*extra):
        return ["invert", ck, "--outdir", str(tmp_path / "o"), "--steps", "1", "--device", "cpu", "--quiet",
                *extra]

    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    assert "cannot read image" in cli_error(invert("--images", str(tmp_path / "broken.png")))
    assert "broken.png" in cli_error(invert("--images", str(tmp_path / "broken.png")))
    assert "does not exist" in cli_error(invert("--images", str(tmp_path / "nothing.png")))
    labels = tmp_path / "labels"
    labels.mkdir()
    Image.fromarray(np.full((SIZE, SIZE), K, np.uint8), mode="L").save(labels / "face0.png")
    line = cli_error(invert("--images", str(d / "photos" / "face0.png"), "--labels", str(labels)))
    assert f"holds class {K}" in line and "face0.png" in line
    line = cli_error(invert("--images", str(d / "photos" / "face1.png"), "--labels", str(labels)))
    assert "has no label" in line and "face1.png" in line
    (tmp_path / "weights.pth").write_bytes(b"not weights")
    line = cli_error(invert("--images", str(d / "photos" / "face0.png"), "--lpips-weights",
                            str(tmp_path / "weights.pth")))
    assert "weights.pth" in line and "vgg16.pt" in line
    assert "steps must be >= 0" in cli_error([*invert("--images", str(d / "photos")), "--steps", "-1"])
    # another size: resized, with a note
    Image.fromarray(np.full((24, 24, 3), 90, np.uint8)).save(tmp_path / "big.png")
    assert main(invert("--images", str(tmp_path / "big.png"))) == 0
    err = capsys.readouterr().err
    assert "big.png is 24x24; resized to 16x16" in err


@pytest.mark.slow
def test_invert_and_edit_a_train_py_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    assert train.main(["--preset", "tiny", "--batch", "2", "--length", "4", "--steps", "1", "--device", "cpu",
                       "--outdir", str(run)]) == 0
    ckpt = run / "checkpoints" / "0000001.safetensors"
    G = load_checkpoint(ckpt).g_ema
    _photos_with_labels(G, tmp_path, 1, seed=2)
    assert main(["invert", str(ckpt), "--images", str(tmp_path / "photos" / "face0.png"), "--outdir",
                 str(tmp_path / "inv"), "--steps", "3", "--device", "cpu", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "perceptual loss: MS-SSIM" in text and "mask guidance: off" in text
    latent = tmp_path / "inv" / "latent" / "face0.npy"
    np.save(tmp_path / "inv" / "latent" / "other.npy", np.load(latent) + 1)
    (tmp_path / "attrs.csv").write_text("name,bright\nface0,0\nother,1\n")
    # --labels: the old spelling of --attributes, still accepted with a warning
    assert main(["direction", str(ckpt), "--latents", str(tmp_path / "inv" / "latent"), "--labels",
                 str(tmp_path / "attrs.csv"), "--attribute", "bright", "--classes", "2",
                 "--out", str(tmp_path / "d.npy")]) == 0
    assert "warning: --labels is deprecated; use --attributes\n" in capsys.readouterr().err
    direction = np.load(tmp_path / "d.npy")
    # "other" = face0 + 1 everywhere is the positive: the normal points along +1 in class 2's codes
    assert Dn.touched_classes(direction, G.config) == [2]
    assert direction[L.class_codes([2], "all", G.config)].sum() > 0
    assert main(["edit", str(ckpt), "--latent", str(latent), "--direction", str(tmp_path / "d.npy"),
                 "--strength", "0,5", "--outdir", str(tmp_path / "edit"), "--device", "cpu"]) == 0
    assert "edited inside classes 2" in capsys.readouterr().out
