"""Training on any segmented dataset: model configuration from flags and files, classes.json and
class names (checkpoint, CLI), colour-coded labels, ``inspect``, and the uint8 training loader."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ssgan import SSGANConfig, preset
from ssgan import visualize as V
from ssgan.checkpoint import load_checkpoint
from ssgan.classes import ClassesError, ClassInfo, read_classes
from ssgan.cli import main as cli
from ssgan.data import images_to_float
from ssgan.data.__main__ import main as data_main
from ssgan.data.loader import StepBatchSampler, make_step_loader
from ssgan.data.synthetic import SyntheticFaces, export_synthetic
from ssgan.data.tools import colors_to_index, inspect_folder
from ssgan.model.config import add_config_flags, config_overrides, resolve_config
from ssgan.train import loop as train
from ssgan.train.rundir import latest_checkpoint

ROOT = Path(__file__).resolve().parents[1]

NAMES = ["background", "face", "eyes", "mouth", "glasses", "box", "triangle", "disc"]
RUN = ["--batch", "4", "--steps", "2", "--device", "cpu", "--log-every", "1", "--sample-every", "100"]


def one_line_error(capsys) -> str:
    """The error line of a failed run (stderr may also hold the progress bar's carriage returns)."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and "step/s]" not in line]
    assert "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith(("ssgan: error: ", "error: ")), err
    return lines[0]


@pytest.fixture(scope="module")
def data8(tmp_path_factory) -> Path:
    """An 8-class, 64 px folder dataset without classes.json."""
    return export_synthetic(tmp_path_factory.mktemp("d8") / "data", n=8, size=64, seg_dim=8)


@pytest.fixture(scope="module")
def named8(data8, tmp_path_factory) -> Path:
    """The same data with a classes.json (names, a transparent class by name, one colour)."""
    root = tmp_path_factory.mktemp("named") / "data"
    root.mkdir()
    for sub in ("images", "labels"):
        (root / sub).symlink_to(data8 / sub)
    (root / "classes.json").write_text(json.dumps(
        {"classes": NAMES, "transparent": ["glasses"], "colors": {"disc": [255, 0, 0]}}))
    return root


@pytest.fixture(scope="module")
def run_flags(data8, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("flags") / "run"
    assert train.main(["--data", str(data8), "--size", "64", "--seg-dim", "8", "--transparent", "4",
                       "--outdir", str(out), *RUN]) == 0
    return out


@pytest.fixture(scope="module")
def run_named(named8, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("named_run") / "run"
    assert train.main(["--data", str(named8), "--size", "64", "--outdir", str(out), *RUN]) == 0
    return out


def _ckpt(out: Path) -> Path:
    return latest_checkpoint(out / "checkpoints")


# ----- configuration from flags and files -------------------------------------------------------
def _parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_config_flags(p)
    return p.parse_args(argv)


def test_every_config_field_has_a_flag(tmp_path):
    base = preset("celeba-256")
    args = _parse("--size", "128", "--seg-dim", "8", "--transparent", "6,7", "--local-layers", "6",
                  "--local_channel", "32", "--no-residual-refine", "--coarse-size", "32", "--lr-mlp", "0.1")
    cfg = resolve_config(base, config_overrides(args))
    assert (cfg.size, cfg.seg_dim, cfg.transparent_dims, cfg.local_layers, cfg.local_channel) == (
        128, 8, (6, 7), 6, 32)
    assert cfg.residual_refine is False and cfg.coarse_size == 32 and cfg.lr_mlp == 0.1
    assert cfg.style_dim == base.style_dim  # untouched fields keep the preset's values
    dests = {a.dest for a in argparse.ArgumentParser()._actions}
    p = argparse.ArgumentParser()
    add_config_flags(p)
    dests = {a.dest for a in p._actions} - dests
    assert dests == {"config"} | {f"cfg_{f.name}" for f in dataclasses.fields(SSGANConfig)}
    # a file with some fields, flags on top; names for --transparent
    (tmp_path / "model.json").write_text(json.dumps({"size": 128, "seg_dim": 8, "transparent_dims": []}))
    over = config_overrides(_parse("--config", str(tmp_path / "model.json"), "--transparent", "eyes"),
                            NAMES)
    assert resolve_config(base, over) == base.replace(size=128, seg_dim=8, transparent_dims=(2,))
    assert over["size"][1] == f"--config {tmp_path / 'model.json'}"
    assert over["transparent_dims"][1] == "--transparent"
    (tmp_path / "bad.json").write_text(json.dumps({"sise": 128}))
    with pytest.raises(ValueError, match="unknown field.*sise"):
        config_overrides(_parse("--config", str(tmp_path / "bad.json")))
    with pytest.raises(ValueError, match="give --transparent too"):
        resolve_config(base, config_overrides(_parse("--seg-dim", "8")))


# ----- training from flags and from classes.json ------------------------------------------------
@pytest.mark.slow
def test_train_from_flags_alone(run_flags):
    ck = load_checkpoint(_ckpt(run_flags))
    assert ck.step == 2
    assert (ck.config.seg_dim, ck.config.size, ck.config.transparent_dims) == (8, 64, (4,))
    assert ck.classes.names == tuple(f"class{k}" for k in range(8))  # no classes.json: defaults
    assert ck.meta["classes"]["names"] == list(ck.classes.names)
    # the model's mask branch has 8 channels: what it learns is an 8-class segmentation
    assert ck.g_ema.synthesize(ck.g_ema.mix_styles([ck.g_ema.mapping(torch.randn(1, 128))])).seg.shape[1] == 8


@pytest.mark.slow
def test_train_from_classes_json(run_named):
    ck = load_checkpoint(_ckpt(run_named))
    assert (ck.config.seg_dim, ck.config.transparent_dims) == (8, (4,))
    assert ck.classes.names == tuple(NAMES) and ck.classes.colors == {7: (255, 0, 0)}
    assert V.palette(ck.classes.k, ck.classes.colors)[7].tolist() == [255, 0, 0]


@pytest.mark.slow
def test_generate_and_mix_take_names(run_named, tmp_path, capsys):
    ckpt = str(_ckpt(run_named))
    assert cli(["generate", ckpt, "--outdir", str(tmp_path / "g"), "-n", "2", "--device", "cpu",
                "--quiet"]) == 0
    lat = tmp_path / "g" / "latent"
    mix = ["mix", ckpt, "--source", str(lat / "000000.npy"), "--reference", str(lat / "000001.npy"),
           "--device", "cpu", "--part", "texture"]
    assert cli([*mix, "--classes", "Mouth,disc", "--outdir", str(tmp_path / "by_name")]) == 0
    assert "inside classes mouth,disc" in capsys.readouterr().out
    assert cli([*mix, "--classes", "3,7", "--outdir", str(tmp_path / "by_index")]) == 0
    a, b = np.load(tmp_path / "by_name" / "result.npy"), np.load(tmp_path / "by_index" / "result.npy")
    assert np.array_equal(a, b) and not np.array_equal(a, np.load(lat / "000000.npy"))
    assert cli(["interpolate", ckpt, "--class", "eyes", "--frames", "2", "--outdir", str(tmp_path / "i"),
                "--device", "cpu", "--quiet"]) == 0
    with pytest.raises(SystemExit):
        cli([*mix, "--classes", "hair", "--outdir", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert "unknown class 'hair'" in err and "7 disc" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_contradictions_are_one_line_errors(named8, run_flags, data8, tmp_path, capsys):
    # classes.json says 8 classes, the flag 9
    assert train.main(["--data", str(named8), "--seg-dim", "9", "--outdir", str(tmp_path / "a"), *RUN]) == 2
    err = one_line_error(capsys)
    assert "--seg-dim" in err and "classes.json" in err and "9" in err and "8" in err
    assert train.main(["--data", str(named8), "--transparent", "eyes", "--outdir", str(tmp_path / "b"),
                       *RUN]) == 2
    assert "--transparent" in one_line_error(capsys)
    # a resumed run with another class count
    assert train.main(["--data", str(data8), "--seg-dim", "6", "--outdir", str(run_flags), "--resume",
                       *RUN]) == 2
    err = one_line_error(capsys)
    assert "seg_dim=6" in err and "seg_dim=8" in err and "0000002.safetensors" in err
    # labels beyond the class count without classes.json: the file and how to set the count
    assert train.main(["--data", str(data8), "--size", "64", "--outdir", str(tmp_path / "c"), *RUN]) == 2
    err = one_line_error(capsys)
    assert "labels" in err and ".png holds class" in err and "--seg-dim" in err and "classes.json" in err


def test_classes_json_errors(tmp_path):
    path = tmp_path / "classes.json"
    for content, message in (({"classes": ["a", "a"]}, "more than once"),
                             ({"classes": ["a", "b"], "transparent": ["c"]}, "'c' is not one of"),
                             ({"classes": ["a"], "colors": {"a": [1, 2]}}, "r, g, b"),
                             ({"names": ["a"]}, '"classes"')):
        path.write_text(json.dumps(content))
        with pytest.raises(ClassesError, match=message):
            read_classes(path)
    info = ClassInfo(tuple(NAMES))
    assert info.indices("EYES,7") == [2, 7]
    # checkpoints without names (the official .pt): CelebAMask-HQ's for K = 13, class<k> otherwise
    assert ClassInfo.from_meta({}, 13).names[7] == "hair" and ClassInfo.from_meta({}, 3).names[2] == "class2"
    with pytest.raises(ClassesError, match="out of range"):
        info.indices("8")


# ----- palette ----------------------------------------------------------------------------------
def test_palette_distinct_for_any_k():
    for k in (1, 13, 40, 256):
        p = V.palette(k)
        assert p.shape == (k, 3) and len({tuple(c) for c in p}) == k
    assert np.array_equal(V.palette(13), V.PALETTE[:13])
    labels = torch.tensor([[[0, 30]]])
    assert V.colorize(labels)[0, 0, 1].tolist() == V.palette(31)[30].tolist()


# ----- colour-coded labels ----------------------------------------------------------------------
def test_from_colors_round_trip_and_unknown_colour(data8, tmp_path, capsys):
    colors = {n: [int(v) for v in c] for n, c in zip(NAMES, V.palette(8), strict=True)}
    spec = tmp_path / "classes.json"
    spec.write_text(json.dumps({"classes": NAMES, "colors": colors}))
    rgb_dir = tmp_path / "rgb"
    rgb_dir.mkdir()
    labels = sorted((data8 / "labels").iterdir())
    for p in labels:
        Image.fromarray(V.palette(8)[np.asarray(Image.open(p))]).save(rgb_dir / p.name)
    assert data_main(["from-colors", str(rgb_dir), str(tmp_path / "out"), "--colors", str(spec),
                      "--quiet"]) == 0
    for p in labels:
        assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / p.name)), np.asarray(Image.open(p)))
    # an unknown colour: one line naming the file, the pixel and the colour; nothing written
    bad = np.array(Image.open(rgb_dir / labels[3].name))
    bad[5, 9] = (1, 2, 3)
    Image.fromarray(bad).save(rgb_dir / labels[3].name)
    with pytest.raises(SystemExit) as info:
        data_main(["from-colors", str(rgb_dir), str(tmp_path / "out2"), "--colors", str(spec), "--quiet"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("ssgan: error: ") and err.count("\n") == 1, err
    assert labels[3].name in err and "(x=9, y=5)" in err and "(1, 2, 3)" in err
    assert not (tmp_path / "out2").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp folder left
    with pytest.raises(Exception, match="no class's colour"):
        colors_to_index(bad, V.palette(8), Path("x.png"))


# ----- inspect ----------------------------------------------------------------------------------
def test_inspect_reports_a_planted_bad_file(named8, tmp_path, capsys):
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for p in sorted((named8 / "images").iterdir()):
        (root / "images" / p.name).write_bytes(p.read_bytes())
        (root / "labels" / p.name).write_bytes((named8 / "labels" / p.name).read_bytes())
    (root / "classes.json").write_text((named8 / "classes.json").read_text())
    data = (root / "images" / "3.png").read_bytes()
    (root / "images" / "3.png").write_bytes(data[: len(data) // 2])  # truncated inside its pixels
    lab = np.asarray(Image.open(root / "labels" / "5.png")).copy()
    lab[0, 0] = 9
    Image.fromarray(lab).save(root / "labels" / "5.png")
    (root / "images" / "extra.png").write_bytes((root / "images" / "0.png").read_bytes())  # no label

    report, _ = inspect_folder(root, size=64, progress=False)
    assert report.n_images == 9 and report.n_labels == 8 and len(report.good) == 6
    text = "\n".join(report.problems)
    assert "3.png" in text and "5.png holds class 9" in text and "extra.png: no label" in text
    assert report.image_sizes == {(64, 64): 9}
    assert data_main(["inspect", str(root), "--size", "64", "--quiet"]) == 1  # problems found
    out = capsys.readouterr().out
    assert "3 problem(s)" in out and "glasses" in out and "transparent" in out and "in images %" in out
    png = np.asarray(Image.open(root / "inspect.png"))
    assert png.shape[1] == 6 * 128 + 5 * 2 and png.shape[0] > 2 * 128 + 2 + 10


# ----- the uint8 training loader ----------------------------------------------------------------
@pytest.mark.parametrize("workers", [0, 2])
def test_uint8_loader_gives_the_float_batches(workers):
    """The loader ships uint8 images; scaled on the device they are bit-identical to the float
    items of the dataset (flipped ones included) that the loader shipped before."""
    ds = SyntheticFaces(32, 8, seg_dim=5)
    loader = iter(make_step_loader(ds, 4, seed=3, hflip=True, workers=workers))
    sampler = StepBatchSampler(len(ds), 4, seed=3, hflip=True)
    for step in range(4):
        batch = next(loader)
        assert batch["image"].dtype == torch.uint8 and batch["image"].shape == (4, 3, 32, 32)
        want = []
        for code in sampler.batch(step):
            flip, i = divmod(code, len(ds))
            img = ds[i]["image"]
            want.append(img.flip(-1) if flip else img)
        assert torch.equal(images_to_float(batch["image"]), torch.stack(want))
    assert images_to_float(torch.full((1,), 255, dtype=torch.uint8)).tolist() == [1.0]
    x = torch.rand(2, 3)
    assert images_to_float(x) is x
