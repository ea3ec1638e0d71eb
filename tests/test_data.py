"""Tests of ssgan.data: the built-in dataset, image/label folders, the loader, the cache and the
CelebAMask-HQ converter (all on tiny data, CPU only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ssgan.data import CachedDataset, DatasetError, FolderDataset, label_to_mask, open_dataset
from ssgan.data.__main__ import main
from ssgan.data.celebamask import celebamask_labels
from ssgan.data.synthetic import SyntheticFaces, export_synthetic

# ------------------------------------------------------------------------------------------------
# helpers


def _check_item(item: dict, size: int, k: int | None) -> None:
    img = item["image"]
    assert img.dtype == torch.float32 and img.shape == (3, size, size)
    assert img.min() >= -1 and img.max() <= 1
    if k is None:
        assert set(item) == {"image"}
        return
    lab, mask = item["label"], item["mask"]
    assert lab.dtype == torch.long and lab.shape == (size, size)
    assert lab.min() >= 0 and lab.max() < k
    assert mask.dtype == torch.float32 and mask.shape == (k, size, size)
    assert set(mask.unique().tolist()) <= {-1.0, 1.0}
    assert torch.equal(((mask + 1) / 2).sum(0), torch.ones(size, size))
    assert torch.equal(mask.argmax(0), lab)


def _save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _lab(h: int, w: int, k: int = 5) -> np.ndarray:
    """Asymmetric blocks of classes 0..k-1."""
    lab = np.zeros((h, w), dtype=np.uint8)
    for c in range(k):
        lab[:, c * w // (k + 1):] = c
    return lab


def _pair(root: Path, stem: str, size: int = 8, suffix: str = ".png", k: int = 5) -> None:
    _save(root / "images" / f"{stem}{suffix}", _rgb(size, size, hash(stem) % 100))
    _save(root / "labels" / f"{stem}.png", _lab(size, size, k))


# ------------------------------------------------------------------------------------------------
# SyntheticFaces


def test_synthetic_deterministic_by_seed():
    a, b, c = SyntheticFaces(32, 4, seed=1), SyntheticFaces(32, 4, seed=1), SyntheticFaces(32, 4, seed=2)
    for i in range(4):
        ia, ib = a[i], b[i]
        assert torch.equal(ia["image"], ib["image"]) and torch.equal(ia["label"], ib["label"])
        assert not torch.equal(ia["image"], c[i]["image"])
    assert not torch.equal(a[0]["image"], a[1]["image"])
    # the global RNGs play no part
    torch.manual_seed(123)
    np.random.seed(5)
    assert torch.equal(a[2]["image"], SyntheticFaces(32, 4, seed=1)[2]["image"])


@pytest.mark.parametrize("size", [8, 17, 32, 64])
def test_synthetic_any_resolution(size):
    ds = SyntheticFaces(size, 3, seg_dim=7)
    assert len(ds) == 3
    for i in range(3):
        _check_item(ds[i], size, 7)
    with pytest.raises(IndexError):
        ds[3]


def test_synthetic_same_scene_across_resolutions():
    lo, hi = SyntheticFaces(32, 4, seed=3), SyntheticFaces(256, 4, seed=3)
    for i in range(4):
        a = np.bincount(lo.render(i)[1].ravel(), minlength=5) / 32**2
        b = np.bincount(hi.render(i)[1].ravel(), minlength=5) / 256**2
        np.testing.assert_allclose(a, b, atol=0.02)


@pytest.mark.parametrize("k", [5, 9])
def test_synthetic_every_class_appears(k):
    ds = SyntheticFaces(32, 16, seg_dim=k)
    seen = set()
    for i in range(len(ds)):
        seen |= set(ds.render(i)[1].ravel().tolist())
    assert seen == set(range(k))


def test_synthetic_rejects_too_few_classes():
    with pytest.raises(ValueError, match="seg_dim >= 5"):
        SyntheticFaces(32, 4, seg_dim=4)


def test_label_to_mask_batched():
    lab = torch.randint(0, 4, (2, 5, 6))
    m = label_to_mask(lab, 4)
    assert m.shape == (2, 4, 5, 6) and torch.equal(m.argmax(1), lab)


# ------------------------------------------------------------------------------------------------
# FolderDataset


def test_folder_round_trip(tmp_path):
    export_synthetic(tmp_path, 3, 16, seed=4, seg_dim=6)
    folder = FolderDataset(tmp_path / "images", tmp_path / "labels", 16, 6)
    synth = SyntheticFaces(16, 3, seed=4, seg_dim=6)
    assert folder.stems == ["0", "1", "2"]
    for i in range(3):
        a, b = folder[i], synth[i]
        _check_item(a, 16, 6)
        for key in ("image", "mask", "label"):
            assert torch.equal(a[key], b[key])


def test_folder_matches_by_stem(tmp_path):
    for n, (stem, suffix) in enumerate([("b", ".jpg"), ("a", ".png"), ("c", ".webp"), ("d", ".BMP")]):
        _save(tmp_path / "images" / f"{stem}{suffix}", np.full((8, 8, 3), 40 * n, np.uint8))
        _save(tmp_path / "labels" / f"{stem}.png", np.full((8, 8), n, np.uint8))
    (tmp_path / "images" / "notes.txt").write_text("not an image")
    ds = FolderDataset(tmp_path / "images", tmp_path / "labels", 8, 5)
    assert ds.stems == ["a", "b", "c", "d"]
    for stem, expect in zip(ds.stems, [1, 0, 2, 3], strict=True):
        item = ds[ds.stems.index(stem)]
        assert (item["label"] == expect).all()
        grey = (item["image"].mean() + 1) * 127.5
        assert abs(grey - 40 * expect) < 3  # jpeg/webp are lossy


def test_folder_resizes_images_lanczos_labels_nearest(tmp_path):
    _save(tmp_path / "images" / "x.png", _rgb(20, 20))
    _save(tmp_path / "labels" / "x.png", _lab(20, 20))
    # CelebA-HQ style: label at half the image resolution
    _save(tmp_path / "images" / "y.png", _rgb(32, 32, 1))
    _save(tmp_path / "labels" / "y.png", _lab(16, 16))
    ds = FolderDataset(tmp_path / "images", tmp_path / "labels", 10, 5)
    for i in range(2):
        item = ds[i]
        _check_item(item, 10, 5)
        assert set(item["label"].unique().tolist()) <= set(range(5))
    expected = np.asarray(Image.fromarray(_rgb(20, 20)).resize((10, 10), Image.Resampling.LANCZOS))
    got = ((ds[0]["image"] + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(got, expected)
    expected_lab = np.asarray(Image.fromarray(_lab(20, 20)).resize((10, 10), Image.Resampling.NEAREST))
    np.testing.assert_array_equal(ds[0]["label"].numpy(), expected_lab)


def test_folder_palette_labels_and_grey_images(tmp_path):
    _save(tmp_path / "images" / "g.png", np.full((8, 8), 100, np.uint8))  # mode L image -> RGB
    pal = Image.fromarray(_lab(8, 8)).convert("P")
    pal.putpalette([v for c in range(256) for v in (c * 3 % 256, c * 7 % 256, c * 11 % 256)])
    (tmp_path / "labels").mkdir()
    pal.save(tmp_path / "labels" / "g.png")
    item = FolderDataset(tmp_path / "images", tmp_path / "labels", 8, 5)[0]
    np.testing.assert_array_equal(item["label"].numpy(), _lab(8, 8))
    assert item["image"].shape == (3, 8, 8)


def test_folder_hflip_flips_both(tmp_path):
    _pair(tmp_path, "x", size=8)
    plain = FolderDataset(tmp_path / "images", tmp_path / "labels", 8, 5)[0]
    ds = FolderDataset(tmp_path / "images", tmp_path / "labels", 8, 5, hflip=True)
    flipped = 0
    for _ in range(20):
        item = ds[0]
        if torch.equal(item["image"], plain["image"]):
            assert torch.equal(item["label"], plain["label"])
        else:
            assert torch.equal(item["image"], plain["image"].flip(-1))
            assert torch.equal(item["label"], plain["label"].flip(-1))
            assert torch.equal(item["mask"], plain["mask"].flip(-1))
            flipped += 1
    assert 0 < flipped < 20


def test_folder_image_only(tmp_path):
    _pair(tmp_path, "x")
    ds = FolderDataset(tmp_path / "images", None, 8, 5)
    assert not ds.has_labels
    _check_item(ds[0], 8, None)


# -- errors ---------------------------------------------------------------------------------------


def test_error_missing_or_empty_folder(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        FolderDataset(tmp_path / "nope", None, 8, 5)
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "readme.txt").write_text("x")
    with pytest.raises(DatasetError, match="no images in .*images"):
        FolderDataset(tmp_path / "images", None, 8, 5)


def test_error_image_without_label(tmp_path):
    for i in range(7):
        _save(tmp_path / "images" / f"img{i}.png", _rgb(8, 8))
    _save(tmp_path / "labels" / "img0.png", _lab(8, 8))
    with pytest.raises(DatasetError) as err:
        FolderDataset(tmp_path / "images", tmp_path / "labels", 8, 5)
    msg = str(err.value)
    assert "6 image(s) have no label" in msg and "img1.png" in msg and "img5.png" in msg
    assert "img6.png" not in msg and "6 in all" in msg


def test_error_label_without_image(tmp_path):
    _pair(tmp_path, "a")
    _save(tmp_path / "labels" / "ghost.png", _lab(8, 8))
    with pytest.raises(DatasetError, match=r"label\(s\) have no image.*ghost\.png"):
        FolderDataset(tmp_path / "images", tmp_path / "labels", 8, 5)


def test_error_duplicate_stem_and_lossy_label(tmp_path):
    _pair(tmp_path, "a")
    _save(tmp_path / "images" / "a.jpg", _rgb(8, 8))
    with pytest.raises(DatasetError, match="share the stem 'a'"):
        FolderDataset(tmp_path / "images", tmp_path / "labels", 8, 5)
    (tmp_path / "images" / "a.jpg").unlink()
    _save(tmp_path / "labels" / "b.jpg", _rgb(8, 8))
    with pytest.raises(DatasetError, match=r"non-PNG files: b\.jpg"):
        FolderDataset(tmp_path / "images", tmp_path / "labels", 8, 5)


def test_error_corrupt_image(tmp_path):
    _pair(tmp_path, "a")
    (tmp_path / "images" / "bad.png").write_bytes(b"this is not a png")
    _save(tmp_path / "labels" / "bad.png", _lab(8, 8))
    with pytest.raises(DatasetError, match=r"cannot read image .*bad\.png: .*re-export or delete it"):
        FolderDataset(tmp_path / "images", tmp_path / "labels", 8, 5)


def test_error_truncated_image_when_read(tmp_path):
    _save(tmp_path / "images" / "t.png", _rgb(64, 64))
    data = (tmp_path / "images" / "t.png").read_bytes()
    (tmp_path / "images" / "t.png").write_bytes(data[: len(data) // 2])
    ds = FolderDataset(tmp_path / "images", None, 8, 5)  # the header alone is fine
    with pytest.raises(DatasetError, match=r"cannot read image .*t\.png: .*re-export or delete it"):
        ds[0]


def test_error_label_value_too_large(tmp_path):
    _save(tmp_path / "images" / "a.png", _rgb(8, 8))
    lab = _lab(8, 8)
    lab[0, 0] = 14
    _save(tmp_path / "labels" / "a.png", lab)
    ds = FolderDataset(tmp_path / "images", tmp_path / "labels", 8, 13)
    with pytest.raises(DatasetError) as err:
        ds[0]
    msg = str(err.value)
    assert "a.png holds class 14" in msg and "seg_dim=13" in msg and "0..12" in msg and "--seg-dim" in msg


@pytest.mark.parametrize("label,message,short", [
    (_rgb(8, 8), r"label .*a\.png has mode RGB .*single-channel", "mode RGB"),
    (_lab(8, 6), r"image .*a\.png is 8x8 but its label .*a\.png is 6x8", "is 6x8"),
], ids=["label-not-single-channel", "image-label-shape-mismatch"])
def test_error_bad_label_when_opened_and_when_read(tmp_path, label, message, short):
    """A bad label stops the dataset when it is opened and, with verify=False, when it is read."""
    _save(tmp_path / "images" / "a.png", _rgb(8, 8))
    _save(tmp_path / "labels" / "a.png", label)
    with pytest.raises(DatasetError, match=message):
        FolderDataset(tmp_path / "images", tmp_path / "labels", 8, 5)
    ds = FolderDataset(tmp_path / "images", tmp_path / "labels", 8, 5, verify=False)
    with pytest.raises(DatasetError, match=short):
        ds[0]


# ------------------------------------------------------------------------------------------------
# open_dataset


def test_open_dataset_choices(tmp_path):
    ds = open_dataset(None, None, None, 16, 6, seed=3, length=5)
    assert isinstance(ds, SyntheticFaces) and len(ds) == 5 and ds.seg_dim == 6 and ds.seed == 3
    assert isinstance(open_dataset("synthetic", None, None, 16, 5), SyntheticFaces)

    export_synthetic(tmp_path / "d", 2, 8)
    ds = open_dataset(str(tmp_path / "d"), None, None, 8, 5, hflip=True)
    assert isinstance(ds, FolderDataset) and ds.has_labels and ds.hflip and len(ds) == 2

    _save(tmp_path / "u" / "images" / "z.png", _rgb(8, 8))
    ds = open_dataset(str(tmp_path / "u"), None, None, 8, 5)
    assert not ds.has_labels
    ds = open_dataset(None, str(tmp_path / "d" / "images"), str(tmp_path / "d" / "labels"), 8, 5)
    assert ds.has_labels and len(ds) == 2
    ds = open_dataset(str(tmp_path / "u"), str(tmp_path / "d" / "images"), None, 8, 5)
    assert len(ds) == 2 and not ds.has_labels  # explicit images override DIR/images
    d = tmp_path / "d"
    ds = open_dataset(str(tmp_path / "u"), str(d / "images"), str(d / "labels"), 8, 5)
    assert len(ds) == 2 and ds.has_labels

    with pytest.raises(DatasetError, match="has no images/ folder"):
        open_dataset(str(tmp_path / "u" / "images"), None, None, 8, 5)
    with pytest.raises(DatasetError, match="does not exist"):
        open_dataset(str(tmp_path / "missing"), None, None, 8, 5)
    with pytest.raises(DatasetError, match="without images"):
        open_dataset(None, None, str(tmp_path / "d" / "labels"), 8, 5)


# ------------------------------------------------------------------------------------------------
# loader and cache


@pytest.mark.parametrize("workers", [0, 2])
def test_training_loader_batches(workers):
    from ssgan.data.loader import make_step_loader

    ds = SyntheticFaces(16, 10, seg_dim=6)
    it = iter(make_step_loader(ds, 4, workers=workers, seed=1))
    batches = [next(it) for _ in range(5)]  # runs past one pass over the 10 items
    b = batches[0]
    assert b["image"].shape == (4, 3, 16, 16) and b["label"].shape == (4, 16, 16)
    assert b["label"].dtype == torch.uint8 and int(b["label"].max()) < 6


def test_cached_dataset(tmp_path):
    base = SyntheticFaces(16, 5, seed=2)
    cached = CachedDataset(base)
    assert cached.images.dtype == torch.uint8 and cached.images.shape == (5, 16, 16, 3)
    for i in range(5):
        a, b = cached[i], base[i]
        assert all(torch.equal(a[k], b[k]) for k in ("image", "mask", "label"))
    with pytest.raises(DatasetError, match="needs .* GiB but the limit"):
        CachedDataset(base, max_bytes=100)
    _save(tmp_path / "images" / "a.png", _rgb(8, 8))
    only = CachedDataset(FolderDataset(tmp_path / "images", None, 8, 5), workers=0)
    assert only.labels is None
    _check_item(only[0], 8, None)
    assert isinstance(open_dataset(None, None, None, 8, 5, length=3, cache=True), CachedDataset)


# ------------------------------------------------------------------------------------------------
# CelebAMask-HQ


def _mask(rows: slice, cols: slice, size: int = 8) -> np.ndarray:
    m = np.zeros((size, size), np.uint8)
    m[rows, cols] = 255
    return m


def _anno_tree(root: Path) -> Path:
    anno = root / "CelebAMask-HQ-mask-anno"
    # id 3 (folder 0): skin everywhere, eyeglasses under the left eye (eye painted later wins),
    # hair over the skin, an earring painted last over the hair
    _save(anno / "0" / "00003_skin.png", _mask(slice(None), slice(None)))
    _save(anno / "0" / "00003_eye_g.png", _mask(slice(2, 4), slice(0, 8)))
    _save(anno / "0" / "00003_l_eye.png", _mask(slice(2, 4), slice(1, 3)))
    _save(anno / "0" / "00003_hair.png", _mask(slice(0, 2), slice(None)))
    _save(anno / "0" / "00003_ear_r.png", _mask(slice(0, 1), slice(0, 1)))
    # id 2001 (folder 1): neck, then cloth over it; lips and nose; RGB masks are accepted
    _save(anno / "1" / "02001_neck.png", _mask(slice(5, 8), slice(None)))
    _save(anno / "1" / "02001_cloth.png", _mask(slice(7, 8), slice(None)))
    _save(anno / "1" / "02001_u_lip.png", np.stack([_mask(slice(4, 5), slice(3, 5))] * 3, -1))
    _save(anno / "1" / "02001_nose.png", _mask(slice(3, 4), slice(3, 5)))
    return anno


@pytest.mark.parametrize("workers", [0, 2])
def test_celebamask_labels(tmp_path, workers):
    anno = _anno_tree(tmp_path)
    assert celebamask_labels(anno, tmp_path / "labels", size=8, progress=False, workers=workers) == 2
    assert sorted(p.name for p in (tmp_path / "labels").iterdir()) == ["2001.png", "3.png"]
    with Image.open(tmp_path / "labels" / "3.png") as im:
        assert im.mode == "L"
        a = np.asarray(im)
    e = np.ones((8, 8), np.uint8)
    e[2:4, :] = 10
    e[2:4, 1:3] = 2
    e[0:2, :] = 7
    e[0, 0] = 12
    np.testing.assert_array_equal(a, e)
    b = np.asarray(Image.open(tmp_path / "labels" / "2001.png"))
    e = np.zeros((8, 8), np.uint8)
    e[5:8, :] = 8
    e[7, :] = 9
    e[4, 3:5] = 4
    e[3, 3:5] = 5
    np.testing.assert_array_equal(b, e)


def test_celebamask_errors_and_cli(tmp_path, capsys):
    with pytest.raises(DatasetError, match="does not exist"):
        celebamask_labels(tmp_path / "nope", tmp_path / "out", size=8, progress=False)
    anno = _anno_tree(tmp_path)
    with pytest.raises(DatasetError, match=r"mask .*0000?3?_?\w*\.png is 8x8 but 16x16 was expected"):
        celebamask_labels(anno, tmp_path / "out", size=16, progress=False)
    assert main(["celebamask", str(anno), str(tmp_path / "cli"), "--size", "8", "--quiet"]) == 0
    assert (tmp_path / "cli" / "3.png").exists()
    with pytest.raises(SystemExit) as info:
        main(["celebamask", str(tmp_path / "nope"), str(tmp_path / "cli")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("ssgan: error: ") and err.count("\n") == 1 and "does not exist" in err
    _save(anno / "0" / "00004_moustache.png", _mask(slice(0, 1), slice(0, 1)))
    with pytest.raises(DatasetError, match="unexpected file .*00004_moustache.png"):
        celebamask_labels(anno, tmp_path / "out", size=8, progress=False)


def test_step_loader_ships_uint8_labels_only():
    """The training loader's items: uint8 image + uint8 label (no float one-hot mask); the mask built
    from it with label_to_mask equals the dataset's own, flipped items included."""
    from ssgan.data import images_to_float, label_to_mask
    from ssgan.data.loader import FlipIndexed
    from ssgan.data.synthetic import SyntheticFaces

    ds = SyntheticFaces(32, 8, seg_dim=5)
    w = FlipIndexed(ds)
    for idx in (1, 9):
        flip, i = divmod(idx, 8)
        a, b = w[idx], ds[i]
        if flip:
            b = {k: v.flip(-1) for k, v in b.items()}
        assert set(a) == {"image", "label"} and a["label"].dtype == a["image"].dtype == torch.uint8
        assert torch.equal(images_to_float(a["image"]), b["image"])
        assert torch.equal(label_to_mask(a["label"], 5), b["mask"])
