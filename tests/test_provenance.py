"""Provenance: the XMP record, the invisible watermark, ``ssgan detect`` and its exit statuses, and
a walk over every command that writes pictures (each file must say it is ssgan's, and carry the
watermark where it is generated content of at least 128 px)."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from ssgan.checkpoint import param_digest, save_checkpoint
from ssgan.cli import main
from ssgan.data.synthetic import SyntheticFaces
from ssgan.model.config import preset
from ssgan.model.generator import SemanticGenerator
from ssgan.provenance import COMPOSITE, SYNTHETIC, TRAINED, Provenance, detect, encode_image, save_image, xmp
from ssgan.provenance import watermark as W

PROV = Provenance(TRAINED, "generate", "ssgan test", "ab" * 32, True, 4242)


def _face(i: int = 0, size: int = 256) -> np.ndarray:
    return SyntheticFaces(size, i + 1, seed=5).render(i)[0]


def test_watermark_round_trip_and_unmarked():
    for key in (0, 4242, 65535):
        found = W.extract(W.embed(_face(key % 3), key))
        assert found.payload_ok and found.key_id == key and found.confidence > 0.9
    assert not any(W.extract(_face(i)).payload_ok for i in range(4))
    small = _face(0, 64)
    assert np.array_equal(W.embed(small, 1), small)  # under MIN_SIZE: unchanged
    with pytest.raises(ValueError, match="out of range"):
        W.embed(_face(), 1 << 16)


def test_watermark_survives_a_crop_and_jpeg():
    marked = W.embed(_face(1), 77)
    crop = marked[13:13 + 230, 7:7 + 230]
    buf = io.BytesIO()
    Image.fromarray(crop).save(buf, format="JPEG", quality=75)
    found = W.extract(np.asarray(Image.open(buf).convert("RGB")))
    assert found.payload_ok and found.key_id == 77


def test_xmp_round_trip_and_foreign_packets():
    found = xmp.parse(xmp.packet(PROV))
    assert xmp.to_provenance(found) == PROV
    assert xmp.parse(b"not xml <") == {} and xmp.to_provenance({"source_type": TRAINED}) is None
    other = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/">'
             b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
             b'<rdf:Description xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"><Iptc4xmpExt:'
             b'DigitalSourceType>' + COMPOSITE.encode() + b'</Iptc4xmpExt:DigitalSourceType>'
             b'</rdf:Description>'
             b'</rdf:RDF></x:xmpmeta>')
    assert xmp.parse(other) == {"source_type": COMPOSITE}


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".gif"])
def test_every_format_carries_record_and_watermark(tmp_path, suffix):
    image = np.stack([_face(0), _face(1)]) if suffix == ".gif" else _face(0)
    path = save_image(image, tmp_path / f"a{suffix}", PROV)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left
    report = detect.inspect_file(path)
    assert xmp.to_provenance(report.metadata) == PROV
    assert report.watermarked and report.key_id == 4242 and report.marked
    assert report.frames == (2 if suffix == ".gif" else 1)


def test_no_watermark_keeps_pixels_and_says_so(tmp_path):
    image = _face(2)
    path = save_image(image, tmp_path / "a.png", PROV.without_watermark())
    assert np.array_equal(np.asarray(Image.open(path)), image)
    report = detect.inspect_file(path)
    assert report.marked and not report.watermarked and report.metadata["watermark"] == "false"
    assert "off, says its record" in report.verdict
    marked = np.asarray(Image.open(io.BytesIO(encode_image(image, PROV))))
    assert 10 * np.log10(255**2 / np.mean((marked.astype(float) - image) ** 2)) >= 38


def test_detect_exit_statuses(tmp_path, capsys):
    save_image(_face(0), tmp_path / "marked" / "a.png", PROV)
    assert main(["detect", str(tmp_path / "marked")]) == 0
    out = capsys.readouterr().out
    assert "synthetic: metadata and watermark" in out and "key id 4242" in out
    Image.fromarray(_face(1)).save(tmp_path / "plain.png")
    assert main(["detect", str(tmp_path / "marked"), str(tmp_path / "plain.png"),
                 "--out", str(tmp_path / "r.json")]) == 1
    report = json.loads((tmp_path / "r.json").read_text())
    assert [f["marked"] for f in report["files"]] == [True, False]
    data = (tmp_path / "marked" / "a.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.jpg").write_text("hello")
    capsys.readouterr()
    assert main(["detect", str(tmp_path / "cut.png"), str(tmp_path / "text.jpg"),
                 str(tmp_path / "marked")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    bad = [line for line in err if line.startswith("ssgan: error: ")]
    assert len(bad) == 2 and "cut.png" in bad[0] and "text.jpg" in bad[1]
    assert all("pass a complete PNG" in line for line in bad)


def test_detect_json_to_stdout(tmp_path, capsys):
    save_image(_face(0), tmp_path / "a.webp", PROV)
    assert main(["detect", str(tmp_path / "a.webp"), "--out", "-"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["files"][0]["key_id"] == 4242 and got["unreadable"] == []


def test_watermark_key_flag_is_checked(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["generate", "x.safetensors", "--outdir", str(tmp_path), "--watermark-key", "70000"])
    assert e.value.code == 2
    assert "--watermark-key" in capsys.readouterr().err


def test_bench_quick(tmp_path):
    from bench import watermark as bench

    assert bench.main(["--quick", "--out", str(tmp_path / "w.json")]) == 0
    report = json.loads((tmp_path / "w.json").read_text())
    ours = report["results"][0]
    assert ours["method"] == "ssgan" and ours["false_positives"]["unmarked_images"] == 24
    assert ours["sets"]["faces"]["detection_rate"]["none"] == 1.0


# ----- every writer ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_every_writer_marks_its_pictures(tmp_path, capsys):
    """Every command that writes pictures, on a tiny random checkpoint, with --watermark-key 321:
    each picture carries ssgan's record, with the generator's digest where one rendered it; each
    one of generated content at least 128 px carries the watermark; ``ssgan detect`` exits 0."""
    from ssgan.serve.editor import Editor
    from ssgan.serve.engine import Engine
    from ssgan.train import loop as train

    torch.manual_seed(0)
    cfg = preset("tiny")
    G = SemanticGenerator(cfg)
    ck = save_checkpoint(tmp_path / "g.safetensors", cfg, g_ema=G)
    digest = param_digest(G)
    key = ["--watermark-key", "321", "--device", "cpu"]
    common = [str(ck), *key, "--quiet"]
    o = tmp_path / "out"
    assert main(["generate", *common, "--outdir", str(o / "gen"), "-n", "16"]) == 0
    lat = o / "gen" / "latent"
    assert main(["mix", *common, "--outdir", str(o / "mix"), "--source", str(lat / "000000.npy"),
                 "--reference", str(lat / "000001.npy"), "--classes", "1", "--diff"]) == 0
    assert main(["components", *common, "--outdir", str(o / "comp")]) == 0
    assert main(["interpolate", *common, "--outdir", str(o / "interp"), "--classes", "1",
                 "--frames", "3"]) == 0
    np.save(tmp_path / "dir.npy", np.random.default_rng(0).standard_normal((cfg.n_latent, cfg.style_dim))
            .astype(np.float32))
    assert main(["edit", *common, "--outdir", str(o / "edit"), "--latent", str(lat / "000002.npy"),
                 "--direction", str(tmp_path / "dir.npy"), "--diff"]) == 0
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(SyntheticFaces(64, 1, seed=3).render(0)[0]).save(photos / "p.png")
    assert main(["invert", str(ck), *key, "--quiet", "--images", str(photos), "--outdir", str(o / "inv"),
                 "--steps", "1"]) == 0
    assert main(["encoder", "train", str(ck), *key, "--quiet", "--outdir", str(o / "enc"), "--steps", "1",
                 "--batch", "2"]) == 0
    assert train.main(["--preset", "tiny", "--steps", "1", "--batch", "4", "--sample-every", "1",
                       "--ckpt-every", "1", "--log-every", "1", "--metrics", "none", "--outdir",
                       str(o / "run"), *key]) == 0
    assert main(["plot", str(o / "run"), "--out", str(o / "curves.png")]) == 0
    data = tmp_path / "data"
    assert main(["data", "synthetic", str(data), "-n", "4", "--size", "32"]) == 0
    assert main(["data", "inspect", str(data), "--out", str(o / "inspect.png"), "--quiet"]) == 0
    editor = Editor(Engine(G, load_checkpoint_classes(ck)), key_id=321)
    sid = editor.new_session()["session"]
    state = editor.resample(sid, [1], "texture", seed=2)
    (o / "editor").mkdir()
    for kind in ("image.png", "mask.png", "diff.png"):
        (o / "editor" / kind).write_bytes(editor.download(sid, kind).body)
    for kind in ("image", "mask"):  # the page's previews, as "save image" in the browser would keep them
        (o / "editor" / f"preview-{kind}.png").write_bytes(base64.b64decode(state[kind].split(",", 1)[1]))
    pictures = detect.files([o])
    writers = {p.relative_to(o).parts[0] for p in pictures}
    assert writers >= {"gen", "mix", "comp", "interp", "edit", "inv", "enc", "run", "curves.png",
                       "inspect.png", "editor"}, writers
    watermarked = 0
    for p in pictures:
        r = detect.inspect_file(p)
        rec = xmp.to_provenance(r.metadata)
        assert rec is not None and rec.software.startswith("ssgan"), p
        if rec.source_type in SYNTHETIC:
            assert rec.generator_digest is not None, p
            assert rec.generator_digest == digest or rec.action in ("invert", "train-sample"), p
            # masks and |difference| maps keep exact pixels; the locality figures (*_diff.png) hold renders
            generated = p.name not in ("mask.png", "diff.png", "preview-mask.png") and p.parent.name != "mask"
            assert rec.watermark == (generated and r.min_side >= W.MIN_SIZE), p
            if rec.watermark:
                assert r.watermarked and r.key_id == 321 and rec.key_id == 321, p
                watermarked += 1
    assert watermarked >= 4
    capsys.readouterr()
    assert main(["detect", str(o)]) == 0, capsys.readouterr().out
    # --no-watermark: the same grid, pixels as rendered, the record saying so
    assert main(["generate", *common, "--outdir", str(tmp_path / "plain"), "-n", "16", "--no-watermark"]) == 0
    plain, marked = (np.asarray(Image.open(d / "grid.png")).astype(float)
                     for d in (tmp_path / "plain", o / "gen"))
    # white padding and legend (255 → 252 ± 3) cost more than a photo's mid-tones: ~37 dB here
    assert 35 <= 10 * np.log10(255**2 / np.mean((plain - marked) ** 2)) < 60
    r = detect.inspect_file(tmp_path / "plain" / "grid.png")
    assert r.marked and not r.watermarked and r.metadata["watermark"] == "false"


def load_checkpoint_classes(path):
    from ssgan.checkpoint import load_checkpoint

    return load_checkpoint(path).classes
