"""The ReStyle-style encoder (ssgan.edit.encoder, encoder_train), ``invert`` starting from it, the edit
locality metric (ssgan.edit.locality) and the photo checks that invert applies."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image

from ssgan.edit import editing as E
from ssgan.edit import encoder as EN
from ssgan.edit import encoder_train as T
from ssgan.edit.inversion import InversionConfig, invert_photos, psnr
from ssgan.edit.locality import change_locality, dilate, locality
from ssgan.edit.photos import load_photos
from ssgan.model.config import preset
from ssgan.model.generator import SemanticGenerator, Synthesis

TINY = preset("tiny")


def _g(cfg=TINY, seed: int = 0) -> SemanticGenerator:
    torch.manual_seed(seed)
    return SemanticGenerator(cfg).eval().requires_grad_(False)


@pytest.fixture(scope="module")
def G() -> SemanticGenerator:
    return _g()


@pytest.mark.parametrize("k", [1, 3, 5, 8])
def test_forward_backward_shapes_for_any_k(k):
    cfg = dataclasses.replace(TINY, seg_dim=k, transparent_dims=())
    G = _g(cfg)
    enc = EN.LatentEncoder.from_generator(G, EN.EncoderConfig.for_generator(cfg, mean_samples=64))
    x = torch.rand(2, 3, cfg.size, cfg.size) * 2 - 1
    delta = enc(x, x.flip(0))
    assert delta.shape == (2, cfg.n_latent, cfg.style_dim) == (2, cfg.base_layers + 2 * k, cfg.style_dim)
    delta.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in enc.parameters())
    passes = EN.encode(G, enc, x, iters=3, every_pass=True)
    assert len(passes) == 3 and all(p.shape == delta.shape for p in passes)
    # pass 1 is the mean latent plus the first residual; iters = 0 is the mean latent itself
    assert torch.allclose(EN.encode(G, enc, x, iters=0), enc.mean_latent(2))
    assert not torch.allclose(passes[0], passes[2])


def test_a_pass_costs_well_under_the_generator(G):
    enc = EN.LatentEncoder.from_generator(G, EN.EncoderConfig.for_generator(TINY, mean_samples=64))
    flops = EN.pass_flops(G, enc)
    assert flops["encoder_flops"] > 0 and flops["ratio"] < 0.3, flops


@pytest.mark.slow
def test_short_training_lowers_the_loss_and_resumes_exactly(G, tmp_path):
    torch.manual_seed(1)
    enc = EN.LatentEncoder.from_generator(G, EN.EncoderConfig.for_generator(TINY, mean_samples=256))
    cfg = T.EncoderTrainConfig(steps=30, batch=4, log_every=10, sample_every=30, ckpt_every=30)
    T.train_encoder(G, tmp_path / "enc.safetensors", cfg, encoder=enc, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "enc.stats.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [10, 20, 30] and {"mse", "percept", "latent", "seg"} <= set(rows[0])
    # a random generator barely depends on some codes (the latent term stays ~1): the image loss falls
    assert rows[-1]["mse"] < 0.9 * rows[0]["mse"] and rows[-1]["psnr"] > rows[0]["psnr"] + 0.3, rows
    assert EN.load_encoder(tmp_path / "enc.safetensors", G)[1]["meta"]["train_cpu_seconds"] > 0
    grid = np.asarray(Image.open(tmp_path / "enc.recon.png"))
    assert grid.shape[1] > 4 * 128  # target | mean | pass 1 | pass N, enlarged
    # 2 + resume 2 == 4 in one go (the batch of a step depends on (seed, step) only)
    short = dataclasses.replace(cfg, steps=4, log_every=2, ckpt_every=2, sample_every=4)
    start = EN.LatentEncoder.from_generator(G, EN.EncoderConfig.for_generator(TINY, mean_samples=256))
    state = {k: v.clone() for k, v in start.state_dict().items()}
    T.train_encoder(G, tmp_path / "a" / "encoder.safetensors", short, encoder=start, progress=False)
    one = {k: v.clone() for k, v in start.state_dict().items()}
    start.load_state_dict(state)
    T.train_encoder(G, tmp_path / "b" / "encoder.safetensors", dataclasses.replace(short, steps=2),
                    encoder=start, progress=False)
    two = T.train_encoder(G, tmp_path / "b" / "encoder.safetensors", short, resume=True, progress=False)
    assert not torch.equal(one["head_weight"], state["head_weight"])
    for name, b in two["encoder"].state_dict().items():
        assert torch.equal(one[name], b), name


def test_encoder_for_another_generator_is_refused(G, tmp_path):
    enc = EN.LatentEncoder.from_generator(G, EN.EncoderConfig.for_generator(TINY, mean_samples=64))
    path = EN.save_encoder(tmp_path / "enc.safetensors", enc, G)
    loaded, info = EN.load_encoder(path, G)
    assert torch.equal(loaded.head_weight, enc.head_weight) and info["meta"]["kind"] == EN.KIND
    with pytest.raises(EN.EncoderError, match="another generator .*ssgan encoder train"):
        EN.load_encoder(path, _g(seed=1))
    other = dataclasses.replace(TINY, seg_dim=6)
    with pytest.raises(EN.EncoderError, match="seg_dim=5 vs 6"):
        EN.load_encoder(path, _g(other))
    (tmp_path / "junk.safetensors").write_bytes(b"nonsense")
    with pytest.raises(EN.EncoderError, match="junk.safetensors"):
        EN.load_encoder(tmp_path / "junk.safetensors", G)


def _photos(G, folder, n=3, seed=5):
    out = E.render(G, E.sample_latents(G, n, seed=seed))
    folder.mkdir(parents=True, exist_ok=True)
    for i, rgb in enumerate(E.V.to_uint8(out.rgb)):
        Image.fromarray(rgb).save(folder / f"p{i}.png")


def test_invert_from_the_encoder(G, tmp_path):
    enc = EN.LatentEncoder.from_generator(G, EN.EncoderConfig.for_generator(TINY, mean_samples=64))
    _photos(G, tmp_path / "photos")
    photos = load_photos([tmp_path / "photos"], TINY.size, TINY.seg_dim)
    m = invert_photos(G, photos, tmp_path / "out", InversionConfig(steps=0, mean_samples=64), batch=2,
                      progress=False, encoder=enc, encoder_source="enc.safetensors")
    for i in range(3):  # steps 0: the latents are the encoder's codes
        assert np.allclose(np.load(tmp_path / "out" / "latent" / f"p{i}.npy"),
                           EN.encode(G, enc, photos.images[i:i + 1])[0].numpy(), atol=1e-5)
    assert m["encoder"] == {"path": "enc.safetensors", "iters": 5} and m["config"]["steps"] == 0
    # a few optimisation steps from the encoder's start improve on it
    m2 = invert_photos(G, photos, tmp_path / "out2", InversionConfig(steps=20, mean_samples=64), batch=3,
                       progress=False, encoder=enc)
    assert m2["mean"]["psnr"] > m["mean"]["psnr"]


def test_bad_photos_are_left_out_with_one_line_each(G, tmp_path):
    _photos(G, tmp_path / "in", n=2)
    Image.fromarray(np.full((32, 32), 80, np.uint8), mode="L").save(tmp_path / "in" / "grey.png")
    rgba = np.full((32, 32, 4), 200, np.uint8)
    rgba[:4, :4, 3] = 0
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "in" / "clear.png")
    opaque = np.full((32, 32, 4), 255, np.uint8)
    Image.fromarray(opaque, mode="RGBA").save(tmp_path / "in" / "opaque.png")
    data = (tmp_path / "in" / "p0.png").read_bytes()
    (tmp_path / "in" / "cut.png").write_bytes(data[: len(data) // 2])
    photos = load_photos([tmp_path / "in"], TINY.size, TINY.seg_dim, skip_bad=True)
    assert photos.stems == ["opaque", "p0", "p1"] and photos.images.shape[0] == 3
    errors = {next(w for w in e.split() if "/in/" in w).rsplit("/", 1)[-1].rstrip(":"): e
              for e in photos.errors}
    assert set(errors) == {"clear.png", "cut.png", "grey.png"}
    assert "greyscale" in errors["grey.png"] and "save it as an RGB image" in errors["grey.png"]
    assert "cannot read" not in errors["grey.png"] and "cannot read" not in errors["clear.png"]
    assert "transparent pixels" in errors["clear.png"] and "flatten" in errors["clear.png"]
    assert "cannot read image" in errors["cut.png"]
    assert all("\n" not in e for e in photos.errors)
    with pytest.raises(Exception, match="greyscale"):
        load_photos([tmp_path / "in" / "grey.png"], TINY.size, TINY.seg_dim, skip_bad=True)


def _synthesis(rgb: torch.Tensor, label: torch.Tensor, k: int) -> Synthesis:
    seg = torch.nn.functional.one_hot(label, k).permute(0, 3, 1, 2).float()
    z = torch.zeros(1)
    return Synthesis(rgb, seg, z, z, z)


def test_locality_planted_case():
    n, size, k = 2, 32, 3
    label = torch.zeros(n, size, size, dtype=torch.long)
    label[:, 8:16, 8:16] = 1  # class 1: an 8×8 square
    label[:, 20:30, 4:28] = 2
    before = torch.zeros(n, 3, size, size)
    local = before.clone()
    local[:, :, 9:15, 9:15] = 0.5  # only inside class 1
    src, res = _synthesis(before, label, k), _synthesis(local, label, k)
    r = change_locality(src, res, [1], radius=2)
    assert r["share"] == pytest.approx(1.0) and r["area"] == pytest.approx(12 * 12 / size ** 2)
    glob = _synthesis(before + 0.3, label, k)  # the same change everywhere: share = area
    g = change_locality(src, glob, [1], radius=2)
    assert g["share"] == pytest.approx(g["area"]) == pytest.approx(144 / 1024)
    leak = local.clone()
    leak[:, :, 0:2, 0:2] = 0.5  # a change outside the dilated region lowers the share
    assert change_locality(src, _synthesis(leak, label, k), [1], radius=2)["share"] < 0.95
    assert dilate(label == 1, 0).sum() == 2 * 64 and dilate(label == 1, 1).sum() == 2 * 100


def test_locality_of_mix_on_a_random_generator(G):
    r = locality(G, n=4, batch=4)
    assert set(r["per_class"]) == set(range(TINY.seg_dim))
    for v in r["per_class"].values():
        assert 0 <= v["share"] <= 1 and 0 <= v["baseline_share"] <= 1 and 0 < v["area"] <= 1
    d = np.zeros((TINY.n_latent, TINY.style_dim), np.float32)
    d[:, 0] = 1
    rd = locality(G, n=2, batch=2, classes=[1], direction=d, strength=2.0)
    assert rd["mode"] == "direction x 2" and 0 <= rd["share"] <= 1


def test_psnr_helper_reused():  # the training log's PSNR is inversion's
    x = torch.zeros(1, 3, 4, 4)
    assert float(psnr(x + 0.2, x)) == pytest.approx(10 * np.log10(4 / 0.04))


# ----- the command line -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def files(tmp_path_factory, G):
    from ssgan.checkpoint import save_checkpoint

    d = tmp_path_factory.mktemp("enc_cli")
    save_checkpoint(d / "g.safetensors", TINY, g_ema=G)
    save_checkpoint(d / "other.safetensors", TINY, g_ema=_g(seed=2))
    _photos(G, d / "photos", n=2)
    return d


def _run(argv, capsys) -> tuple[int, str, str]:
    from ssgan.cli import main

    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_encoder_train_then_invert_from_it(files, tmp_path, capsys):
    d = files
    train = ["encoder", "train", d / "g.safetensors", "--outdir", tmp_path / "enc", "--batch", 2, "--device",
             "cpu", "--quiet"]
    code, out, err = _run([*train, "--steps", 2, "--data", "synthetic"], capsys)
    assert code == 0, err
    enc = tmp_path / "enc" / "encoder.safetensors"
    assert enc.is_file() and (tmp_path / "enc" / "stats.jsonl").is_file()
    assert (tmp_path / "enc" / "recon.png").is_file()
    code, _, err = _run([*train, "--steps", 3], capsys)
    assert code == 2 and "exists; pass --resume" in err and len(err.strip().splitlines()) == 1
    code, out, err = _run([*train, "--steps", 3, "--resume"], capsys)
    assert code == 0 and "resuming" in err and EN.load_encoder(enc, _g())[1]["step"] == 3
    # encoder only: --steps 0
    code, out, err = _run(["invert", d / "g.safetensors", "--encoder", enc, "--images", d / "photos",
                           "--steps", 0, "--outdir", tmp_path / "inv", "--device", "cpu", "--quiet"], capsys)
    assert code == 0, err
    assert "from the encoder" in out
    metrics = json.loads((tmp_path / "inv" / "metrics.json").read_text())
    assert metrics["encoder"]["path"] == str(enc) and set(metrics["images"]) == {"p0", "p1"}
    assert (tmp_path / "inv" / "recon" / "p0.png").is_file()
    assert (tmp_path / "inv" / "latent" / "p1.npy").is_file()
    # then optimisation and tuning from its start
    code, _, err = _run(["invert", d / "g.safetensors", "--encoder", enc, "--images", d / "photos",
                         "--steps", 2, "--finetune-steps", 1, "--outdir", tmp_path / "inv2", "--device",
                         "cpu", "--quiet"], capsys)
    assert code == 0 and (tmp_path / "inv2" / "generator.safetensors").is_file(), err


def test_invert_with_encoder_bad_input(files, tmp_path, capsys):
    d = files
    enc = EN.save_encoder(tmp_path / "enc.safetensors", EN.LatentEncoder.from_generator(
        _g(), EN.EncoderConfig.for_generator(TINY, mean_samples=64)), _g())

    def invert(*extra):
        return ["invert", d / "g.safetensors", "--outdir", tmp_path / "o", "--device", "cpu", "--quiet",
                "--encoder", enc, *extra]

    code, _, err = _run(["invert", d / "other.safetensors", "--encoder", enc, "--images", d / "photos",
                         "--outdir", tmp_path / "x", "--device", "cpu"], capsys)
    assert code == 2 and "another generator" in err and str(enc) in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()  # nothing written
    code, _, err = _run(invert("--images", d / "photos", "--steps", -1), capsys)
    assert code == 2 and "steps must be >= 0" in err
    # a greyscale photo and a truncated one among good ones: the good ones are inverted, status 2
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for p in (d / "photos").iterdir():
        (mixed / p.name).write_bytes(p.read_bytes())
    Image.fromarray(np.full((32, 32), 9, np.uint8), mode="L").save(mixed / "grey.png")
    (mixed / "cut.png").write_bytes((d / "photos" / "p0.png").read_bytes()[:40])
    Image.fromarray(np.full((48, 48, 3), 90, np.uint8)).save(mixed / "big.png")
    code, _, err = _run(invert("--images", mixed, "--steps", 0), capsys)
    lines = err.strip().splitlines()
    assert code == 2
    assert any("grey.png" in line and "greyscale" in line and line.startswith("ssgan: error:")
               for line in lines)
    assert any("cut.png" in line and "cannot read image" in line for line in lines)
    assert any("big.png is 48x48; resized to 32x32" in line for line in lines)
    assert sorted(p.stem for p in (tmp_path / "o" / "latent").iterdir()) == ["big", "p0", "p1"]
    assert not list((tmp_path / "o").rglob("*.tmp"))


def test_mix_and_edit_write_the_difference_map(files, tmp_path, capsys, G):
    d = files
    lat = E.sample_latents(G, 2, seed=3).numpy()
    np.save(tmp_path / "a.npy", lat[0])
    np.save(tmp_path / "b.npy", lat[1])
    code, out, err = _run(["mix", d / "g.safetensors", "--source", tmp_path / "a.npy", "--reference",
                           tmp_path / "b.npy", "--classes", "1", "--outdir", tmp_path / "mix", "--diff",
                           "--device", "cpu"], capsys)
    assert code == 0, err
    assert "share of |result - source| inside" in out
    fig = np.asarray(Image.open(tmp_path / "mix" / "mix_diff.png"))
    assert fig.shape[1] == 4 * 128 + 3 * 2  # before | after | heat map | region, enlarged
    direction = np.zeros((TINY.n_latent, TINY.style_dim), np.float32)
    direction[3] = 1
    np.save(tmp_path / "d.npy", direction)
    code, out, err = _run(["edit", d / "g.safetensors", "--latent", tmp_path / "a.npy", "--direction",
                           tmp_path / "d.npy", "--strength", "0,4", "--outdir", tmp_path / "edit", "--diff",
                           "--device", "cpu"], capsys)
    assert code == 0, err
    assert (tmp_path / "edit" / "edit_diff.png").is_file() and "share of" in out


def test_bench_encoder_dry_run(tmp_path):
    from bench import encoder as bench

    assert bench.main(["--dry-run", "--quiet", "--json", str(tmp_path / "e.json")]) == 0
    report = json.loads((tmp_path / "e.json").read_text())
    methods = [r["method"] for r in report["rows"]]
    assert methods == ["mean latent", "encoder x1", "encoder x5", "optimisation 2", "optimisation 4",
                       "encoder x5 + 2", "encoder x5 + 2 + PTI 1"]
    for r in report["rows"]:
        # mean PSNR >= the PSNR of the mean MSE (Jensen), both from the same per-image errors
        assert r["psnr"] >= 10 * np.log10(1 / r["mse"]) - 1e-9 and 0 <= r["ms_ssim"] <= 1
    assert report["dry_run"] and report["targets"]["seed"] == 1
    assert report["flops"]["this_model"]["ratio"] < 0.3
