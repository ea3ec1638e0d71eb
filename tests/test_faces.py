"""The built-in portraits (``--data faces``, ssgan.data.faces): 9 named classes, attributes that
match what is drawn, the same scene at every resolution, deterministic per seed, exported with
classes.json and attributes.csv that ``ssgan data inspect`` and ``--data DIR`` read."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from ssgan.cli import main
from ssgan.data import FACE_ATTRIBUTES, FACE_CLASSES, ProceduralFaces, open_dataset
from ssgan.data.faces import grid_noise
from ssgan.data.synthetic import value_noise

GLASSES, BEARD, HAIR = (FACE_CLASSES.index(k) for k in ("glasses", "beard", "hair"))


def test_names_and_every_class_drawn():
    ds = ProceduralFaces(32, 40, seed=1)
    assert ds.class_names == FACE_CLASSES and len(FACE_CLASSES) == 9 and ds.seg_dim == 9
    seen = set()
    for i in range(40):
        seen |= set(np.unique(ds.render(i)[1]).tolist())
    assert seen == set(range(9))


def test_attributes_match_the_labels():
    """glasses / beard present exactly when the attribute says so; bald: no hair at all."""
    ds = ProceduralFaces(48, 60, seed=2)
    counts = dict.fromkeys(FACE_ATTRIBUTES, 0)
    for i in range(60):
        label = ds.render(i)[1]
        a = ds.attributes(i)
        assert list(a) == list(FACE_ATTRIBUTES)
        assert a["glasses"] == int((label == GLASSES).any()), i
        assert a["beard"] == int((label == BEARD).any()), i
        if a["bald"]:
            assert not (label == HAIR).any() and not a["bangs"], i
        for k, v in a.items():
            counts[k] += v
    assert all(0 < c < 60 for c in counts.values()), counts  # every attribute varies


def test_deterministic_per_seed_and_resolution_independent():
    a, b = ProceduralFaces(64, 8, seed=3), ProceduralFaces(64, 8, seed=3)
    for i in range(3):
        ia, la = a.render(i)
        ib, lb = b.render(i)
        assert np.array_equal(ia, ib) and np.array_equal(la, lb)
    assert not np.array_equal(a.render(0)[0], ProceduralFaces(64, 8, seed=4).render(0)[0])
    small, large = ProceduralFaces(32, 4, seed=3).render(1)[1], ProceduralFaces(128, 4, seed=3).render(1)[1]
    agree = (large[2::4, 2::4] == small).mean()  # the 128 px pixel nearest each 32 px centre
    assert agree > 0.93, agree


def test_item_carries_its_attributes_and_the_noise_is_value_noise():
    ds = ProceduralFaces(32, 4, seed=0)
    item = ds[2]
    assert item["image"].shape == (3, 32, 32) and item["mask"].shape == (9, 32, 32)
    expected = torch.tensor([float(ds.attributes(2)[k]) for k in FACE_ATTRIBUTES])
    assert torch.equal(item["attributes"], expected)
    c = (np.arange(24) + 0.5) / 24
    yy, xx = np.meshgrid(c, c, indexing="ij")
    ours = grid_noise(np.random.default_rng(5), c, 6)
    assert np.allclose(ours, value_noise(np.random.default_rng(5), xx, yy, 6))


def test_wrong_class_count_names_the_fix():
    with pytest.raises(ValueError, match="--preset small"):
        ProceduralFaces(32, 4, seg_dim=5)
    with pytest.raises(ValueError, match="--preset small"):
        open_dataset("faces", None, None, 32, 5)
    assert isinstance(open_dataset("faces", None, None, 32, 9, length=7), ProceduralFaces)


def test_export_inspect_and_reopen(tmp_path, capsys):
    out = tmp_path / "faces"
    assert main(["data", "synthetic", str(out), "--kind", "faces", "-n", "6", "--size", "32"]) == 0
    assert json.loads((out / "classes.json").read_text())["classes"] == list(FACE_CLASSES)
    with (out / "attributes.csv").open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["name", *FACE_ATTRIBUTES] and len(rows) == 7
    ds = ProceduralFaces(32, 6)
    assert rows[4] == ["3"] + [str(ds.attributes(3)[k]) for k in FACE_ATTRIBUTES]
    assert main(["data", "inspect", str(out), "--size", "32", "--quiet"]) == 0
    assert "glasses" in capsys.readouterr().out
    folder = open_dataset(str(out), None, None, 32, 9)
    assert torch.equal(folder[5]["label"], ds[5]["label"])
    with pytest.raises(SystemExit) as e:
        main(["data", "synthetic", str(tmp_path / "bad"), "--kind", "faces", "--seg-dim", "5"])
    assert e.value.code == 2 and "drop --seg-dim" in capsys.readouterr().err
