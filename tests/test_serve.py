"""``ssgan serve``'s JSON API through Starlette's test client (no network, no browser): sample,
edits, undo/redo, downloads that ``ssgan mix``/``edit`` read, bad uploads, independent sessions,
local texture edits, and the per-class render cache against a full recompute."""

from __future__ import annotations

import argparse
import base64
import io
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

pytest.importorskip("starlette")
pytest.importorskip("httpx")
from starlette.testclient import TestClient  # noqa: E402

import ssgan  # noqa: E402
from ssgan import cli  # noqa: E402
from ssgan.classes import ClassInfo, default_names  # noqa: E402
from ssgan.edit import editing as E  # noqa: E402
from ssgan.serve import commands  # noqa: E402
from ssgan.serve.app import create_app  # noqa: E402
from ssgan.serve.editor import Limits  # noqa: E402
from ssgan.serve.engine import Engine, LocalCache  # noqa: E402

CFG = ssgan.preset("tiny")
NAMES = ("background", "face", "eyes", "mouth", "glasses")
TRAINED = Path(__file__).parent / "data" / "serve_tiny.safetensors"


@pytest.fixture(scope="module")
def engine() -> Engine:
    torch.manual_seed(0)
    return Engine(ssgan.SemanticGenerator(CFG), ClassInfo(NAMES, (4,)))


@pytest.fixture()
def client(engine: Engine) -> TestClient:
    return TestClient(create_app(engine, Limits(max_bytes=200_000, max_pixels=300 * 300, invert_steps=3)))


def new_session(client: TestClient) -> str:
    r = client.post("/api/session", json={})
    assert r.status_code == 200, r.text
    return r.json()["session"]


def decode(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))


def labels(state: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(state["labels"]), np.uint8).reshape(CFG.size, CFG.size)


def latent_of(client: TestClient, sid: str) -> np.ndarray:
    r = client.get(f"/api/download/latent.npy?session={sid}")
    assert r.status_code == 200
    return np.load(io.BytesIO(r.content), allow_pickle=False)


def test_info_lists_the_classes(client):
    info = client.get("/api/info").json()
    assert [c["name"] for c in info["classes"]] == list(NAMES)
    assert info["classes"][4]["transparent"] and not info["classes"][3]["transparent"]
    assert info["size"] == CFG.size and info["directions"] == ["pc1", "pc2", "pc3", "pc4", "pc5"]


def test_sample_is_the_cli_sample(client, engine):
    sid = new_session(client)
    s = client.post("/api/sample", json={"session": sid, "seed": 5, "truncation": 0.7}).json()
    assert s["action"] == "sample seed 5" and s["position"] == 1 and s["can_undo"]
    expected = E.sample_latents(engine.G, 1, 5, 0.7, engine.mean())[0].numpy()
    np.testing.assert_array_equal(latent_of(client, sid), expected)  # what `ssgan generate` saves
    out = E.render(engine.G, torch.from_numpy(expected)[None])
    np.testing.assert_array_equal(decode(s["image"]), ssgan.visualize.to_uint8(out.rgb)[0])
    assert decode(s["mask"]).shape == (CFG.size, CFG.size, 3)
    np.testing.assert_array_equal(labels(s), out.seg.argmax(1)[0].numpy())


def test_edit_undo_redo_and_download(client, engine, tmp_path):
    sid = new_session(client)
    before = latent_of(client, sid)
    s = client.post("/api/edit", json={"session": sid, "op": "resample", "classes": [3], "part": "texture",
                                       "seed": 9}).json()
    assert s["classes"] == [3] and s["last"]["recomputed_classes"] == [3]
    after = latent_of(client, sid)
    assert after.shape == (CFG.n_latent, CFG.style_dim) and after.dtype == np.float32
    texture = CFG.base_layers + 2 * 3 + 1
    changed = np.flatnonzero(np.abs(after - before).sum(1))
    assert changed.tolist() == [texture]  # only the mouth's texture code moved
    assert s["diff"]["classes"] == [3] and decode(s["diff"]["image"]).shape == (CFG.size, CFG.size, 3)

    s = client.post("/api/undo", json={"session": sid}).json()
    assert s["can_redo"] and not s["can_undo"]
    np.testing.assert_array_equal(latent_of(client, sid), before)
    s = client.post("/api/redo", json={"session": sid}).json()
    assert not s["can_redo"]
    np.testing.assert_array_equal(latent_of(client, sid), after)
    r = client.post("/api/redo", json={"session": sid})
    assert r.status_code == 400 and r.json()["error"] == "nothing to redo"

    # the downloaded .npy is what `ssgan mix` takes (a compact W+ file)
    path = tmp_path / "edited.npy"
    path.write_bytes(client.get(f"/api/download/latent.npy?session={sid}").content)
    res = E.mix(engine.G, np.load(path), np.load(path), [1], "all")
    assert res["latent"].shape == (1, CFG.n_latent, CFG.style_dim)
    for kind in ("image.png", "mask.png", "diff.png"):
        r = client.get(f"/api/download/{kind}?session={sid}")
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(r.content)).size == (CFG.size, CFG.size)
    assert client.get(f"/api/download/..%2Fsecret?session={sid}").status_code == 404


def test_copy_interpolate_and_direction(client, engine):
    sid = new_session(client)
    start = latent_of(client, sid)
    client.post("/api/reference", json={"session": sid, "seed": 11})
    ref = E.sample_latents(engine.G, 1, 11, engine.truncation, engine.mean())[0].numpy()
    s = client.post("/api/edit", json={"session": sid, "op": "copy", "classes": [1, 2], "part": "all"}).json()
    copied = latent_of(client, sid)
    codes = [CFG.base_layers + 2 * k + o for k in (1, 2) for o in (0, 1)]
    np.testing.assert_array_equal(copied[codes], ref[codes])
    others = [i for i in range(CFG.n_latent) if i not in codes]
    np.testing.assert_array_equal(copied[others], start[others])

    # a drag of the interpolation slider is one history entry, always measured from its start
    for t in (0.3, 0.9, 0.5):
        s = client.post("/api/edit", json={"session": sid, "op": "interpolate", "classes": [3],
                                           "part": "texture", "t": t}).json()
    assert s["length"] == 3 and s["position"] == 2  # sample, copy, the drag
    tex = CFG.base_layers + 2 * 3 + 1
    np.testing.assert_allclose(latent_of(client, sid)[tex], copied[tex] + 0.5 * (ref[tex] - copied[tex]),
                               rtol=1e-5, atol=1e-6)
    anchor = latent_of(client, sid)
    s = client.post("/api/edit", json={"session": sid, "op": "direction", "classes": [3], "part": "shape",
                                       "direction": "pc1", "strength": 2.0}).json()
    assert s["length"] == 4
    vector = engine.direction("pc1", [3], "shape").vector
    assert np.flatnonzero(np.abs(vector).sum(1)).tolist() == [CFG.base_layers + 2 * 3]
    np.testing.assert_allclose(latent_of(client, sid), anchor + 2.0 * vector, rtol=1e-5, atol=1e-6)
    assert "pc1" in s["action"] and s["last"]["recomputed_classes"] == [3]
    bad = client.post("/api/edit", json={"session": sid, "op": "direction", "classes": [3], "part": "shape",
                                         "direction": "smile", "strength": 1})
    assert bad.status_code == 400 and "unknown direction 'smile'" in bad.json()["error"]
    bad = client.post("/api/edit", json={"session": sid, "op": "resample", "classes": [9], "part": "all"})
    assert bad.status_code == 400 and "out of range" in bad.json()["error"]
    bad = client.post("/api/edit", json={"session": sid, "op": "resample", "classes": [], "part": "all"})
    assert bad.status_code == 400 and "pick at least one region" in bad.json()["error"]


def test_open_a_latent_file(client, engine):
    """A downloaded (or `ssgan generate`) .npy opens as the current face, from the request body."""
    a, b = new_session(client), new_session(client)
    client.post("/api/sample", json={"session": a, "seed": 21})
    npy = client.get(f"/api/download/latent.npy?session={a}").content
    s = client.post(f"/api/latent?session={b}&name=mine.npy", content=npy).json()
    assert s["action"] == "open mine.npy" and s["position"] == 1
    np.testing.assert_array_equal(latent_of(client, b), latent_of(client, a))
    other = client.get(f"/api/state?session={a}").json()
    np.testing.assert_array_equal(decode(s["image"]), decode(other["image"]))
    buf = io.BytesIO()
    np.save(buf, np.zeros((3, 4), np.float32))
    r = client.post(f"/api/latent?session={b}&name=bad.npy", content=buf.getvalue())
    assert r.status_code == 400 and "bad.npy has shape (3, 4)" in r.json()["error"]
    r = client.post(f"/api/latent?session={b}&name=x.npy", content=b"\x93NUMPY garbage")
    assert r.status_code == 400 and "x.npy is not a .npy array" in r.json()["error"]
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    r = client.post(f"/api/latent?session={b}&name=pickle.npy", content=buf.getvalue())
    assert r.status_code == 400 and "pickle.npy is not a .npy array" in r.json()["error"]  # never unpickled


def test_sessions_are_independent(client):
    a, b = new_session(client), new_session(client)
    la, lb = latent_of(client, a), latent_of(client, b)
    np.testing.assert_array_equal(la, lb)  # both start at seed 0
    client.post("/api/sample", json={"session": a, "seed": 3})
    client.post("/api/edit", json={"session": a, "op": "resample", "classes": [1], "part": "all"})
    np.testing.assert_array_equal(latent_of(client, b), lb)
    sb = client.get(f"/api/state?session={b}").json()
    assert sb["length"] == 1 and not sb["can_undo"]
    assert client.get(f"/api/state?session={a}").json()["length"] == 3
    r = client.get("/api/state?session=nope")
    assert r.status_code == 404 and "reload the page" in r.json()["error"]


def test_bad_uploads_are_4xx_with_a_message(client):
    sid = new_session(client)
    r = client.post(f"/api/invert?session={sid}&name=notes.txt", content=b"not an image at all")
    assert r.status_code == 415 and "notes.txt is not an image" in r.json()["error"]
    r = client.post(f"/api/invert?session={sid}&name=big.png", content=b"x" * 300_000)
    assert r.status_code == 413 and "limit" in r.json()["error"]
    buf = io.BytesIO()
    Image.new("RGB", (400, 400)).save(buf, format="PNG")  # 160,000 pixels > the 90,000 cap
    r = client.post(f"/api/invert?session={sid}&name=wide.png", content=buf.getvalue())
    assert r.status_code == 413 and "400x400" in r.json()["error"]
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(buf, format="PNG")
    r = client.post(f"/api/invert?session={sid}&name=cut.png", content=buf.getvalue()[:400])  # truncated
    assert r.status_code == 415 and r.json()["error"].startswith("cannot read image upload 'cut.png'")
    r = client.post(f"/api/invert?session={sid}&name=empty.png", content=b"")
    assert r.status_code == 400
    r = client.post("/api/edit", content=b"{not json")
    assert r.status_code == 400 and "JSON" in r.json()["error"]
    assert client.get("/api/info").status_code == 200  # still serving


def wait_job(client: TestClient, sid: str, timeout: float = 60) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        job = client.get(f"/api/invert?session={sid}").json()["job"]
        if job["status"] != "running":
            return job
        time.sleep(0.05)
    raise AssertionError("the inversion did not finish")


def test_upload_inverts_and_cancels(client, engine):
    sid = new_session(client)
    target = E.render(engine.G, E.sample_latents(engine.G, 1, 4))
    buf = io.BytesIO()
    Image.fromarray(ssgan.visualize.to_uint8(target.rgb)[0]).save(buf, format="PNG")
    r = client.post(f"/api/invert?session={sid}&steps=3&name=me.png", content=buf.getvalue())
    assert r.status_code == 200 and r.json()["status"] == "running"
    job = wait_job(client, sid)
    assert job["status"] == "done" and job["done_steps"] == 3 and job["psnr"] is not None
    s = client.get(f"/api/state?session={sid}").json()
    assert s["action"] == "invert me.png (3 steps)" and s["length"] == 2
    assert latent_of(client, sid).shape == (CFG.n_latent, CFG.style_dim)

    r = client.post(f"/api/invert?session={sid}&steps=2000&name=me.png", content=buf.getvalue())
    assert r.status_code == 200
    client.post("/api/invert/cancel", json={"session": sid})
    job = wait_job(client, sid)
    assert job["status"] == "cancelled" and job["done_steps"] < 2000
    assert client.get(f"/api/state?session={sid}").json()["length"] == 2  # nothing pushed


def test_an_encoder_replaces_the_search(engine):
    """The hook for ``--encoder`` (ssgan.edit.encoder): an image → latent function answers the upload."""
    from ssgan.serve.editor import Editor

    fixed = engine.sample(12)
    seen = []
    enc = Engine(engine.G, engine.classes, encoder=lambda x: seen.append(x.shape) or fixed)
    editor = Editor(enc)
    sid = editor.new_session()["session"]
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 120, 90)).save(buf, format="JPEG")
    editor.start_inversion(sid, buf.getvalue(), "me.jpg", 50)
    end = time.monotonic() + 30
    while editor.job(sid)["job"]["status"] == "running" and time.monotonic() < end:
        time.sleep(0.02)
    assert editor.job(sid)["job"]["status"] == "done" and seen == [(1, 3, CFG.size, CFG.size)]
    assert torch.equal(editor.sessions.get(sid).current.latent, fixed)


def test_latest_request_wins(engine):
    from ssgan.serve.editor import Editor

    editor = Editor(engine)
    sid = editor.new_session()["session"]
    session = editor.sessions.get(sid)
    session.see(7)  # a newer request (seq 7) has arrived while seq 5 waited for the lock
    stale = editor.sample(sid, 3, None, seq=5)
    assert stale["stale"] and len(session.history) == 1
    fresh = editor.sample(sid, 3, None, seq=8)
    assert not fresh.get("stale") and len(session.history) == 2


def test_the_editor_works_without_http(engine):
    """The editor's operations called directly: an edit and its change map, undo/redo (the change
    over the classes of the step crossed), a drag as one history entry, a download's bytes, and
    bad input as ClientError with its status."""
    from ssgan.serve.editor import Editor
    from ssgan.serve.errors import ClientError

    editor = Editor(engine)
    sid = editor.new_session()["session"]
    s = editor.resample(sid, [3], "texture", seed=9)
    assert s["action"] == "resample texture of mouth (seed 9)" and s["last"]["recomputed_classes"] == [3]
    assert s["diff"]["classes"] == [3]
    s = editor.undo(sid)
    assert s["position"] == 0 and s["diff"]["classes"] == [3] and s["last"]["name"] == "undo"
    assert editor.redo(sid)["position"] == 1
    with pytest.raises(ClientError) as e:
        editor.redo(sid)
    assert e.value.status == 400 and str(e.value) == "nothing to redo"
    for t in (0.2, 0.6):
        s = editor.interpolate(sid, [1], "all", t)
    assert s["length"] == 3 and s["action"].endswith("t = 0.60")
    got = editor.download(sid, "latent.npy")
    assert got.filename == "ssgan-002-latent.npy" and got.media_type == "application/octet-stream"
    assert np.load(io.BytesIO(got.body)).shape == (CFG.n_latent, CFG.style_dim)
    for call, status in [(lambda: editor.state("nope"), 404), (lambda: editor.download(sid, "x.png"), 404),
                         (lambda: editor.move(sid, [1], "all", "pc1", 50.0), 400),
                         (lambda: editor.copy(sid, [1], "hair"), 400)]:
        with pytest.raises(ClientError) as e:
            call()
        assert e.value.status == status


def test_bad_fields_are_400_not_500(client):
    """Input that used to reach a library's ValueError (a seed torch cannot take, an int() over a
    JSON 1e400 or a superscript digit, a .npy of strings) is refused as the client's error."""
    sid = new_session(client)
    bad = [("/api/sample", {"session": sid, "seed": 2**70}, 400, "seed must be a 64-bit integer"),
           ("/api/sample", {"session": sid, "seed": 1.5}, 400, "field 'seed' must be int"),
           ("/api/sample", {"session": sid, "truncation": 2}, 400, "truncation must be in [0, 1]"),
           ("/api/sample", {"session": [sid]}, 404, "reload the page"),
           ("/api/edit", {"session": sid, "op": "warp", "classes": [1]}, 400, "op must be resample"),
           ("/api/edit", {"session": sid, "op": "interpolate", "classes": [1]}, 400, "missing field 't'"),
           ("/api/edit", {"session": sid, "op": "direction", "classes": [1], "direction": "pc1",
                          "strength": 50}, 400, "strength must be in [-20, 20]")]
    for path, body, status, words in bad:
        r = client.post(path, json=body)
        assert r.status_code == status and words in r.json()["error"], (body, r.text)
    r = client.post("/api/sample", content=f'{{"session": "{sid}", "seed": 1e400}}'.encode())
    assert r.status_code == 400 and "field 'seed' must be int" in r.json()["error"]
    for steps in ("\u00b2", "1" * 30, "-3"):
        r = client.post(f"/api/invert?session={sid}&steps={steps}", content=b"x")
        assert r.status_code == 400 and "steps must be a whole number" in r.json()["error"], r.text
    buf = io.BytesIO()
    np.save(buf, np.full((CFG.n_latent, CFG.style_dim), "a"))
    r = client.post(f"/api/latent?session={sid}&name=s.npy", content=buf.getvalue())
    assert r.status_code == 400 and "s.npy holds dtype <U1, not a float array" in r.json()["error"]
    assert client.get(f"/api/state?session={sid}").json()["length"] == 1  # nothing changed


def test_a_bug_is_a_500_with_a_logged_traceback(client, monkeypatch, caplog):
    """Only ClientError is the client's fault: any other exception from inside the editor, a
    ValueError too (once answered 400), is a 500 with one line for the page and the API's headers,
    its traceback logged; the session is unchanged and the server keeps serving."""
    import logging

    sid = new_session(client)
    editor = client.app.state.editor

    def fails(error: Exception):
        def raise_it(*args, **kwargs):
            raise error
        return raise_it

    with monkeypatch.context() as m, caplog.at_level(logging.ERROR, logger="ssgan.serve"):
        m.setattr(editor, "sample", fails(ZeroDivisionError("division by zero")))
        r = client.post("/api/sample", json={"session": sid, "seed": 1})
        assert r.status_code == 500
        assert r.json() == {"error": "internal error: ZeroDivisionError: division by zero"}
        assert r.headers["cache-control"] == "no-store"
        assert r.headers["content-security-policy"].startswith("default-src 'self'")
        m.setattr(editor.engine, "render", fails(ValueError("a bug deep inside")))
        r = client.post("/api/edit", json={"session": sid, "op": "resample", "classes": [1], "part": "all"})
        assert r.status_code == 500 and r.json()["error"] == "internal error: ValueError: a bug deep inside"
    failed = [rec for rec in caplog.records if rec.name == "ssgan.serve" and rec.exc_info]
    assert [rec.getMessage() for rec in failed] == ["POST /api/sample failed", "POST /api/edit failed"]
    assert "Traceback" in caplog.text and "in raise_it" in caplog.text
    s = client.get(f"/api/state?session={sid}").json()
    assert s["length"] == 1 and s["action"] == "sample seed 0"
    r = client.post("/api/sample", json={"session": sid, "seed": 1})
    assert r.status_code == 200 and r.json()["length"] == 2


def test_cached_render_equals_full_recompute(engine):
    """The per-class cache re-runs only the changed classes' local generators and gives the same
    images as rendering from scratch, through a chain of edits: the hidden features bit for bit,
    the pseudo-depths and images to float rounding (a subset's depth matmul may take another BLAS
    path on CPU), the same 8-bit images and masks."""
    cache = LocalCache()
    latent = engine.sample(2)
    engine.render(latent, cache)
    assert cache.recomputed == list(range(CFG.seg_dim))
    steps = [(engine.replace, (engine.sample(40), [3], "texture"), [3]),
             (engine.replace, (engine.sample(41), [1, 2], "shape"), [1, 2]),
             (engine.interpolate, (engine.sample(42), [4], "all", 0.4), [4]),
             (None, None, [])]
    for fn, args, expect in steps:
        latent = latent if fn is None else fn(latent, *args)
        cached = engine.render(latent, cache)
        assert cache.recomputed == expect
        full = E.render(engine.G, latent)
        with torch.no_grad():
            h, _ = engine.G.local_features(engine.G.expand_latents(latent))
        assert torch.equal(cache.h, h)
        for a, b in zip(cached, full):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
        np.testing.assert_array_equal(engine.pictures(cached)["image"], engine.pictures(full)["image"])
        np.testing.assert_array_equal(engine.pictures(cached)["labels"], engine.pictures(full)["labels"])
    # a different base code (a new sample) re-runs every class
    engine.render(engine.sample(43), cache)
    assert cache.recomputed == list(range(CFG.seg_dim))


@pytest.mark.skipif(not TRAINED.is_file(), reason=f"{TRAINED} missing")
def test_texture_resample_stays_inside_the_region():
    """On a trained tiny model (tests/data/serve_tiny.safetensors: G-EMA after the 1200 steps of
    `python train.py`), resampling the eyes' or the mouth's texture barely changes the pixels
    outside that class's mask dilated by 2 px: their mean change is under a quarter of the change
    inside, for every seed tried (measured: at most 0.17 over seeds 0–11)."""
    ck = ssgan.load_checkpoint(TRAINED)
    client = TestClient(create_app(Engine(ck.g_ema, ck.classes)))
    sid = new_session(client)
    checked = 0
    for seed in range(6):
        before = client.post("/api/sample", json={"session": sid, "seed": seed, "truncation": 0.7}).json()
        for k in (2, 3):
            s = client.post("/api/edit", json={"session": sid, "op": "resample", "classes": [k],
                                               "part": "texture", "seed": 1000 + seed}).json()
            region = (labels(before) == k) | (labels(s) == k)
            if region.sum() < 4:
                client.post("/api/undo", json={"session": sid})
                continue
            dilated = F.max_pool2d(torch.from_numpy(region).float()[None, None], 5, 1, 2)[0, 0].bool().numpy()
            d = np.abs(decode(s["image"]).astype(float) - decode(before["image"]).astype(float)).mean(-1)
            inside, outside = d[dilated].mean(), d[~dilated].mean()
            assert outside < 0.25 * inside, (seed, k, inside, outside)
            checked += 1
            client.post("/api/undo", json={"session": sid})
    assert checked >= 10


def test_command_line_errors_and_user_directions(tmp_path, capsys):
    def fails(argv: list[str]) -> str:
        with pytest.raises(SystemExit) as info:
            cli.main(["serve", *argv])
        assert info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("ssgan: error: "), err
        return err[0]

    assert "does not exist" in fails([str(tmp_path / "missing.safetensors"), "--port", "0"])
    ck = ssgan.save_checkpoint(tmp_path / "g.safetensors", CFG, g_ema=ssgan.SemanticGenerator(CFG))
    (tmp_path / "dirs").mkdir()
    np.save(tmp_path / "dirs" / "smile.npy", np.zeros((3, 3), np.float32))
    dirs = str(tmp_path / "dirs")
    assert "smile.npy has shape (3, 3)" in fails([str(ck), "--directions", dirs, "--port", "0"])
    assert "--invert-steps must be in 1..2000" in fails([str(ck), "--invert-steps", "0"])
    np.save(tmp_path / "dirs" / "smile.npy", np.ones((CFG.n_latent, CFG.style_dim), np.float32))
    parser = argparse.ArgumentParser()
    commands.add_arguments(parser)
    args = parser.parse_args([str(ck), "--directions", str(tmp_path / "dirs"), "--device", "cpu",
                              "--no-compile"])
    client = TestClient(commands.build(args))
    info = client.get("/api/info").json()
    assert info["directions"] == ["smile"] and info["direction_kind"] == "user"
    sid = new_session(client)
    before = latent_of(client, sid)
    s = client.post("/api/edit", json={"session": sid, "op": "direction", "classes": [2], "part": "texture",
                                       "direction": "smile", "strength": 1.5}).json()
    moved = latent_of(client, sid) - before
    texture = CFG.base_layers + 2 * 2 + 1
    assert np.flatnonzero(np.abs(moved).sum(1)).tolist() == [texture]  # only the eyes' texture code
    np.testing.assert_allclose(moved[texture], 1.5, rtol=1e-6)
    assert "along smile by +1.50" in s["action"]


def test_any_class_count():
    """A 7-class model without stored names: class0 … class6, and an edit of the last class."""
    import dataclasses

    cfg = dataclasses.replace(CFG, seg_dim=7, transparent_dims=())
    G = ssgan.SemanticGenerator(cfg)
    client = TestClient(create_app(Engine(G, ClassInfo(default_names(7)))))
    info = client.get("/api/info").json()
    assert [c["name"] for c in info["classes"]] == [f"class{i}" for i in range(7)]
    assert len({tuple(c["color"]) for c in info["classes"]}) == 7
    sid = new_session(client)
    body = {"session": sid, "op": "resample", "classes": [6], "part": "all"}
    s = client.post("/api/edit", json=body).json()
    assert s["last"]["recomputed_classes"] == [6]
    assert latent_of(client, sid).shape == (cfg.n_latent, cfg.style_dim)


def test_python_m_ssgan_serve_prints_its_address(tmp_path):
    """The real entry point: binds 127.0.0.1 (port 0: a free one), prints the address and the class
    names, answers, and stops on SIGINT."""
    import json
    import os
    import re
    import signal
    import subprocess
    import sys
    from urllib.request import urlopen

    ck = ssgan.save_checkpoint(tmp_path / "g.safetensors", CFG, g_ema=ssgan.SemanticGenerator(CFG),
                               meta={"classes": {"names": list(NAMES)}})
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "ssgan.serve", str(ck), "--port", "0", "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        m = re.match(r"ssgan serve: http://127\.0\.0\.1:(\d+)/ ", line)
        assert m, (line, proc.stderr.read() if proc.poll() is not None else "")
        assert "classes: background, face, eyes, mouth, glasses" in line
        with urlopen(f"http://127.0.0.1:{m.group(1)}/api/info", timeout=30) as r:
            assert json.load(r)["size"] == CFG.size
        with urlopen(f"http://127.0.0.1:{m.group(1)}/", timeout=30) as r:
            page = r.read().decode()
            assert r.headers["content-security-policy"].startswith("default-src 'self'")
        assert 'data-testid="upload-input"' in page
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    # the shipped page names no other host: no CDN, web font or analytics URL
    static = Path(ssgan.__file__).parent / "serve" / "static"
    assert sorted(p.name for p in static.iterdir()) == ["app.js", "index.html", "style.css"]
    for f in static.iterdir():
        text = f.read_text()
        assert not re.search(r"(?i:https?:)|//[a-z0-9.-]+\.[a-z]{2,}/|@import|\burl\(", text), f  # CSS url()


def test_every_testid_is_documented():
    """The page's data-testids (static ones in index.html, the per-class ones app.js makes) are the
    documented list in docs/serve.md, "Page test ids"."""
    import re

    root = Path(__file__).resolve().parents[1]
    static = root / "ssgan" / "serve" / "static"
    ids = set(re.findall(r'data-testid="([^"]+)"', (static / "index.html").read_text()))
    made = re.findall(r"testid = `([^`]+)`", (static / "app.js").read_text())
    ids |= {m.replace("${c.index}", "<k>") for m in made}
    doc = (root / "docs" / "serve.md").read_text()
    section = doc[doc.index("## Page test ids"):].split("\n## ")[0]
    listed = set(re.findall(r"`([a-z<>-]+)`", section))
    assert len(ids) >= 40 and ids <= listed, sorted(ids - listed)



def test_serve_encoder_flag(tmp_path, capsys):
    """``ssgan serve --encoder ENC``: an upload is answered by the encoder (its codes, no search); an
    encoder trained for another generator is a one-line error."""
    from ssgan.edit.encoder import LatentEncoder, encode, load_encoder, save_encoder

    G = ssgan.SemanticGenerator(CFG).eval()
    ck = ssgan.save_checkpoint(tmp_path / "g.safetensors", CFG, g_ema=G)
    torch.manual_seed(3)
    enc = save_encoder(tmp_path / "enc.safetensors", LatentEncoder.from_generator(G), G)
    other = save_encoder(tmp_path / "other.safetensors", LatentEncoder.from_generator(G),
                         ssgan.SemanticGenerator(CFG))
    with pytest.raises(SystemExit) as info:
        cli.main(["serve", str(ck), "--encoder", str(other), "--device", "cpu"])
    assert info.value.code == 2 and "another generator" in capsys.readouterr().err

    parser = argparse.ArgumentParser()
    commands.add_arguments(parser)
    args = parser.parse_args([str(ck), "--encoder", str(enc), "--device", "cpu", "--no-compile"])
    editor = commands.build(args).state.editor
    sid = editor.new_session()["session"]
    buf = io.BytesIO()
    Image.new("RGB", (CFG.size, CFG.size), (200, 120, 90)).save(buf, format="PNG")
    editor.start_inversion(sid, buf.getvalue(), "me.png", 2000)  # a 2000-step search would take minutes
    end = time.monotonic() + 60
    while editor.job(sid)["job"]["status"] == "running" and time.monotonic() < end:
        time.sleep(0.02)
    assert editor.job(sid)["job"]["status"] == "done"
    image = torch.tensor([200.0, 120.0, 90.0]).div(127.5).sub(1).view(1, 3, 1, 1)
    image = image.expand(1, 3, CFG.size, CFG.size)
    with torch.no_grad():
        want = encode(G, load_encoder(enc, G)[0], image)
    torch.testing.assert_close(editor.sessions.get(sid).current.latent, want, rtol=1e-5, atol=1e-5)


def test_the_page_starts_a_new_session_when_its_own_expired(client):
    """An evicted session is a 404 naming it unknown or expired; the page (app.js ``act``) answers
    that by asking for a new session instead of showing the error (the soak counts the 404s)."""
    r = client.post("/api/sample", json={"session": "evicted-long-ago"})
    assert r.status_code == 404 and "unknown or expired session" in r.json()["error"]
    js = (Path(commands.__file__).with_name("static") / "app.js").read_text()
    pattern = js.split("const EXPIRED = /", 1)[1].split("/;", 1)[0]
    assert pattern in r.json()["error"]
    assert "if (e.status === 404 && EXPIRED.test(e.message)) return await renewSession();" in js
