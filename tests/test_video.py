"""Videos: H.264 mp4 written atomically with metadata saying synthetic, read back frame by frame;
``--video``/``--fps`` on ``interpolate`` and ``edit``; ``ssgan video`` (each class's shape and
texture swept in turn); bad paths and bad credentials stop a command before it writes anything."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

av = pytest.importorskip("av", reason="PyAV is not installed: pip install 'ssgan[video]'")

from ssgan import SemanticGenerator, preset  # noqa: E402
from ssgan.checkpoint import save_checkpoint  # noqa: E402
from ssgan.cli import main  # noqa: E402
from ssgan.edit import editing as E  # noqa: E402
from ssgan.edit import sweep as S  # noqa: E402
from ssgan.model import latents as L  # noqa: E402
from ssgan.provenance.record import COMPOSITE, TRAINED, Provenance  # noqa: E402
from ssgan.provenance.video import (  # noqa: E402
    VideoError,
    read_frames,
    video_metadata,
    video_provenance,
    write_video,
)

CFG = preset("tiny")
PROV = Provenance(TRAINED, "video", "ssgan 0.1.0", "ab" * 32)


def _frames(n: int, h: int = 33, w: int = 47) -> list[np.ndarray]:
    return [np.full((h, w, 3), 20 + 20 * i, np.uint8) for i in range(n)]


def _stream(path):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return s.codec_context.name, s.frames, float(s.average_rate), (s.width, s.height)


def test_write_read_metadata(tmp_path):
    path = tmp_path / "v.mp4"
    seen = []

    def mark(frame):
        seen.append(frame.shape)
        return 255 - frame

    assert write_video(path, iter(_frames(7)), 12.5, PROV, mark_frame=mark, progress=False) == 7
    assert seen == [(33, 47, 3)] * 7
    assert _stream(path) == ("h264", 7, 12.5, (48, 34))  # odd sides padded for 4:2:0
    frames = list(read_frames(path))
    assert len(frames) == 7 and frames[0].shape == (34, 48, 3)
    levels = [f.mean() for f in frames]
    np.testing.assert_allclose(levels, [255 - 20 - 20 * i for i in range(7)], atol=2)  # marked, then encoded
    assert [f.mean() for f in read_frames(path, every=3)] == [levels[0], levels[3], levels[6]]
    meta = video_metadata(path)
    assert TRAINED in meta["comment"] and "ssgan 0.1.0" in meta["comment"] and "Synthetic" in meta["comment"]
    assert meta["digital_source_type"] == TRAINED and meta["software"] == "ssgan 0.1.0"
    assert video_provenance(path) == PROV
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_write_is_atomic_and_checks_its_frames(tmp_path):
    path = tmp_path / "v.mp4"
    write_video(path, _frames(3), 10, PROV, progress=False)
    before = path.read_bytes()

    def breaks():
        yield from _frames(2)
        raise RuntimeError("renderer died")

    with pytest.raises(RuntimeError):
        write_video(path, breaks(), 10, PROV, progress=False)
    with pytest.raises(VideoError, match="all frames must have one size"):
        write_video(path, [*_frames(2), np.zeros((8, 8, 3), np.uint8)], 10, PROV, progress=False)
    with pytest.raises(VideoError, match="no frames"):
        write_video(path, [], 10, PROV, progress=False)
    assert path.read_bytes() == before and sorted(tmp_path.iterdir()) == [path]  # no temporary file left
    with pytest.raises(VideoError, match="does not exist; create it"):
        write_video(tmp_path / "no" / "v.mp4", _frames(2), 10, PROV, progress=False)


def test_unreadable_videos(tmp_path):
    path = tmp_path / "v.mp4"
    write_video(path, _frames(12, 64, 64), 10, PROV, progress=False)
    data = path.read_bytes()
    for name, body, says in [("half.mp4", data[: len(data) * 2 // 3], "truncated"),
                             ("head.mp4", data[:300], "complete"),
                             ("junk.mp4", b"not a video" * 10, "not a readable video")]:
        (tmp_path / name).write_bytes(body)
        with pytest.raises(VideoError, match=says) as info:
            list(read_frames(tmp_path / name))
        assert name in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(VideoError, match="no such video file"):
        list(read_frames(tmp_path / "none.mp4"))


def test_loop_spline_passes_through_its_keys():
    keys = torch.randn(4, 3, 5)
    path = S.loop_spline(keys, 6)
    assert path.shape == (24, 3, 5)
    torch.testing.assert_close(path[::6], keys)
    # smooth: the step into a key equals the step out of it to first order
    steps = path.roll(-1, 0) - path
    assert (steps - steps.roll(1, 0)).abs().max() < steps.abs().max()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ck") / "tiny.safetensors"
    return save_checkpoint(path, CFG, g_ema=SemanticGenerator(CFG).eval(), step=1)


def test_sweep_moves_one_code_at_a_time(ckpt):
    from ssgan.checkpoint import load_checkpoint

    G = load_checkpoint(ckpt).g_ema
    src = E.sample_latents(G, 1, seed=3)
    codes = S.sweep_latents(G, src, 1, "texture", targets=2, steps=3, seed=5)
    assert codes.shape == (9, CFG.n_latent, CFG.style_dim)
    moving = L.class_codes([1], "texture", CFG)
    others = [i for i in range(CFG.n_latent) if i not in moving]
    assert torch.equal(codes[:, others], src[:, others].expand(9, -1, -1))
    assert torch.equal(codes[0], src[0]) and (codes[1:, moving] != src[:, moving]).any()


def _fails(argv, capsys) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ssgan: error: "), err
    return err[0]


def test_ssgan_video(ckpt, tmp_path):
    out = tmp_path / "sweep.mp4"
    assert main(["video", str(ckpt), "--out", str(out), "--classes", "1", "2", "--targets", "1",
                 "--frames", "3", "--fps", "8", "--device", "cpu", "--quiet"]) == 0
    # 2 classes x (shape, texture) x (1 target + return) x 3 frames
    codec, count, fps, (w, h) = _stream(out)
    assert (codec, count, fps, w) == ("h264", 24, 8.0, 2 * CFG.size + 2)
    assert h > CFG.size  # the caption strip below image | mask
    assert video_provenance(out).action == "video" and video_provenance(out).generator_digest


def test_video_flags_on_interpolate_and_edit(ckpt, tmp_path):
    assert main(["interpolate", str(ckpt), "--classes", "1", "--frames", "5", "--outdir", str(tmp_path / "i"),
                 "--video", str(tmp_path / "i.mp4"), "--device", "cpu", "--quiet"]) == 0
    assert _stream(tmp_path / "i.mp4")[1:3] == (5, 12.5)
    assert video_metadata(tmp_path / "i.mp4")["digital_source_type"] == TRAINED
    lat, direction = tmp_path / "l.npy", tmp_path / "d.npy"
    np.save(lat, np.zeros((CFG.n_latent, CFG.style_dim), np.float32))
    np.save(direction, np.ones((CFG.n_latent, CFG.style_dim), np.float32))
    assert main(["edit", str(ckpt), "--latent", str(lat), "--direction", str(direction),
                 "--strength=-1,0,1,2", "--outdir", str(tmp_path / "e"), "--video", str(tmp_path / "e.mp4"),
                 "--fps", "2", "--device", "cpu", "--quiet"]) == 0
    assert _stream(tmp_path / "e.mp4")[1:3] == (4, 2.0)
    assert video_provenance(tmp_path / "e.mp4").source_type == COMPOSITE


@pytest.mark.parametrize("video, says", [("no/such/folder/v.mp4", "does not exist; create it"),
                                         ("v.avi", "give a name ending in .mp4")])
def test_a_bad_video_path_stops_before_any_work(ckpt, tmp_path, capsys, video, says):
    out = tmp_path / "out"
    msg = _fails(["interpolate", str(ckpt), "--classes", "1", "--outdir", str(out), "--video",
                  str(tmp_path / video), "--device", "cpu", "--quiet"], capsys)
    assert says in msg and "--video" in msg
    assert not out.exists()
    msg = _fails(["video", str(ckpt), "--out", str(tmp_path / video), "--device", "cpu"], capsys)
    assert says in msg and "--out" in msg
    assert _fails(["video", str(ckpt), "--out", str(tmp_path / "v.mp4"), "--fps", "0"], capsys).endswith(
        "--fps must be > 0, not 0")


def test_c2pa_flags_sign_every_output_or_stop_before_writing(ckpt, tmp_path, capsys):
    pytest.importorskip("c2pa", reason="c2pa-python is not installed: pip install 'ssgan[c2pa]'")
    from test_c2pa import make_chain

    from ssgan.provenance.c2pa_sign import read_manifest

    cert, key, root = make_chain(tmp_path / "pki")
    out = tmp_path / "i"
    assert main(["interpolate", str(ckpt), "--classes", "1", "--frames", "2", "--outdir", str(out),
                 "--video", str(tmp_path / "i.mp4"), "--device", "cpu", "--quiet",
                 "--c2pa-cert", str(cert), "--c2pa-key", str(key)]) == 0
    for path in [out / "frame_000.png", out / "frame_001.png", out / "interpolation.gif", tmp_path / "i.mp4"]:
        report = read_manifest(path, trust=root)
        assert report.valid and report.trusted and report.actions == ["c2pa.created"], (path, report)
        assert report.provenance.action == "interpolate"
    assert len(list(read_frames(tmp_path / "i.mp4"))) == 2  # still a playable video

    expired, old_key, _ = make_chain(tmp_path / "old", days=(-30, -1))
    bad = tmp_path / "bad"
    msg = _fails(["interpolate", str(ckpt), "--classes", "1", "--outdir", str(bad), "--device", "cpu",
                  "--c2pa-cert", str(expired), "--c2pa-key", str(old_key)], capsys)
    assert str(expired) in msg and "expired" in msg and not bad.exists()
    assert "give --c2pa-cert and --c2pa-key together" in _fails(
        ["interpolate", str(ckpt), "--classes", "1", "--outdir", str(bad), "--c2pa-cert", str(cert)], capsys)

    plain = tmp_path / "plain"  # without the flags: no manifest
    assert main(["interpolate", str(ckpt), "--classes", "1", "--frames", "2", "--outdir", str(plain),
                 "--device", "cpu", "--quiet"]) == 0
    assert read_manifest(plain / "frame_000.png") is None


def test_detect_reads_a_videos_record_and_watermark(tmp_path, capsys):
    """``ssgan detect`` on an mp4: the container's record and the watermark of its frames (at least
    128 px: marked through :func:`ssgan.provenance.mark`, as ``--video`` writes them); a truncated
    video is one unreadable-file line and exit 2."""
    from ssgan.cli import main
    from ssgan.data.synthetic import SyntheticFaces
    from ssgan.provenance import detect, mark

    prov = Provenance(TRAINED, "video", "ssgan test", "ab" * 32, True, 321)
    frames = [SyntheticFaces(256, 6, seed=3).render(i)[0] for i in range(6)]
    path = tmp_path / "faces.mp4"
    write_video(path, frames, 6, prov, mark_frame=lambda f: mark(f, prov)[0], progress=False)
    report = detect.inspect_file(path)
    assert report.metadata["source_type"] == TRAINED and report.metadata["action"] == "video"
    assert report.frames >= 2 and report.frames_marked == report.frames and report.key_id == 321
    assert main(["detect", str(path)]) == 0
    assert "metadata and watermark" in capsys.readouterr().out
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    assert main(["detect", str(cut)]) == 2
    error, summary = capsys.readouterr().err.strip().split("\n")  # one line for the file, one summary
    assert error.startswith("ssgan: error:") and "cut.mp4" in error and "truncated" in error
    assert "1 unreadable" in summary


def test_generate_and_invert_are_signed_and_detect_validates(ckpt, tmp_path, capsys, monkeypatch):
    """``--c2pa-cert/--c2pa-key`` on ``generate`` (``c2pa.created``) and ``invert`` (the photo as the
    ingredient, ``c2pa.edited``); ``ssgan detect`` reads and validates each manifest, and calls a
    tampered file's manifest invalid."""
    pytest.importorskip("c2pa", reason="c2pa-python is not installed: pip install 'ssgan[c2pa]'")
    from test_c2pa import make_chain, tamper_png

    from ssgan.data.synthetic import export_synthetic
    from ssgan.provenance import detect

    cert, key, root = make_chain(tmp_path / "pki")
    monkeypatch.setenv("SSGAN_C2PA_TRUST", str(root))
    sign = ["--c2pa-cert", str(cert), "--c2pa-key", str(key), "--device", "cpu", "--quiet"]
    assert main(["generate", str(ckpt), "-n", "2", "--outdir", str(tmp_path / "gen"), *sign]) == 0
    photos = export_synthetic(tmp_path / "photos", 1, 32, seed=4)
    assert main(["invert", str(ckpt), "--images", str(photos / "images"), "--steps", "2",
                 "--outdir", str(tmp_path / "inv"), *sign]) == 0
    capsys.readouterr()
    generated = detect.inspect_file(tmp_path / "gen" / "img" / "000000.png").c2pa
    assert generated["valid"] and generated["trusted"] and generated["actions"] == ["c2pa.created"]
    recon = detect.inspect_file(tmp_path / "inv" / "recon" / "0.png").c2pa
    assert recon["valid"] and recon["ingredients"] == ["0.png"] and "c2pa.edited" in recon["actions"]
    assert main(["detect", str(tmp_path / "gen" / "grid.png")]) == 0
    assert "C2PA: valid, trusted signer" in capsys.readouterr().out

    tampered = tmp_path / "gen" / "img" / "000001.png"
    tamper_png(tampered)  # one pixel changed: a valid PNG whose pixels no longer match the manifest
    main(["detect", str(tampered)])
    assert "C2PA: INVALID manifest" in capsys.readouterr().out
