"""train.py end to end on the tiny preset: outputs, the non-finite guard, data errors, image-only
data, and a two-process DDP run (gloo, CPU). Stopping on a signal and resuming exactly:
tests/test_train_signals.py."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ssgan import DualBranchDiscriminator, SemanticGenerator, preset
from ssgan.checkpoint import load_checkpoint
from ssgan.train import loop as train
from ssgan.train import losses
from ssgan.train import steps as T
from ssgan.train.rng import seed_everything
from ssgan.train.rundir import SAMPLE_MIN_PIXELS, list_checkpoints

ROOT = Path(__file__).resolve().parents[1]

# tiny, fast, and every regularisation path exercised
BASE = ["--preset", "tiny", "--batch", "4", "--length", "16", "--d-reg-every", "2", "--g-reg-every", "2",
        "--device", "cpu"]
LOSS_KEYS = list(T.LOSS_KEYS)


def run(tmp: Path, *extra: str) -> int:
    return train.main([*BASE, "--outdir", str(tmp), *extra])


def stats(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "stats.jsonl").read_text().splitlines()]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_short_run_writes_everything(tmp_path):
    out = tmp_path / "run"
    assert run(out, "--steps", "4", "--log-every", "3", "--sample-every", "2", "--ckpt-every", "2",
               "--keep", "1", "--count", "3") == 0
    recs = stats(out)
    assert [r["step"] for r in recs] == [3, 4]  # every 3 steps and always the last
    for r in recs:
        for k in ["step", "kimg", *LOSS_KEYS, "sec_per_kimg", "peak_mem_mb"]:
            assert k in r, k
            assert np.isfinite(r[k]), k
        assert r["kimg"] == pytest.approx(r["step"] * 4 / 1000)
        assert r["peak_mem_mb"] > 0
    assert recs[-1]["r1_img"] > 0 and recs[-1]["r1_seg"] > 0 and recs[-1]["path_length"] > 0
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["0000002.png", "0000004.png"]
    img = np.asarray(Image.open(out / "samples" / "0000004.png"))
    s = SAMPLE_MIN_PIXELS  # 32 px tiles are shown enlarged
    assert img.shape == (2 * s + 2, 6 * s + 5 * 2, 3)  # 2 samples per row × (image, mask, coarse)
    ckpts = sorted(p.name for p in (out / "checkpoints").iterdir())
    # --keep 1; the default CPU metric (maskfd500) is evaluated at the last step: its best G-EMA;
    # latest: a relative symlink to the newest step checkpoint
    assert ckpts == ["0000004.safetensors", "best-maskfd500.safetensors", "latest.safetensors"]
    assert os.readlink(out / "checkpoints" / "latest.safetensors") == "0000004.safetensors"
    ck = load_checkpoint(out / "checkpoints" / "0000004.safetensors")
    assert ck.step == 4 and ck.g is not None and ck.d is not None and ck.g_ema is not None
    assert ck.g_optim_state is not None and ck.d_optim_state is not None
    assert "rank0.rng.torch_cpu" in ck.tensors and "rank0.mean_path_length" in ck.tensors
    assert ck.tensors["rank0.mean_path_length"].item() == pytest.approx(recs[-1]["mean_path_length"])
    # G-EMA moved away from its initial copy of G but not all the way
    g, ema = ck.g.state_dict(), ck.g_ema.state_dict()
    assert any(not torch.equal(g[k], ema[k]) for k in g)
    # running again continues the run (--resume auto: nothing left to do); --resume never refuses
    assert run(out, "--steps", "4") == 0
    assert run(out, "--steps", "4", "--resume", "never") == 2


@pytest.mark.slow
def test_non_finite_guard_keeps_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    out = tmp_path / "nan"
    calls = {"n": 0}
    real = losses.g_nonsaturating_loss

    def poisoned(fake_pred):
        calls["n"] += 1
        loss = real(fake_pred)
        return loss * float("nan") if calls["n"] == 5 else loss  # the G step of step 5

    monkeypatch.setattr(losses, "g_nonsaturating_loss", poisoned)
    code = run(out, "--steps", "6", "--log-every", "3", "--ckpt-every", "2", "--keep", "5",
               "--sample-every", "100")
    err = capsys.readouterr().err
    assert code == 1
    assert "step 5" in err and "g" in err.split("loss term(s)")[1].split("became")[0]
    good = out / "checkpoints" / "0000004.safetensors"
    assert str(good) in err
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["0000002.safetensors",
                                                                         "0000004.safetensors"]
    assert [r["step"] for r in stats(out)] == [3]  # the bad step-6 record is not logged
    ck = load_checkpoint(good)
    assert T.params_finite(ck.g, ck.d, ck.g_ema)


def test_dataset_smaller_than_batch(tmp_path, capsys):
    assert train.main([*BASE, "--length", "3", "--steps", "1", "--outdir", str(tmp_path / "x")]) == 2
    assert "dataset has 3 images but one batch needs 4" in capsys.readouterr().err


def test_batch_not_divisible_by_world_size(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert run(tmp_path / "x", "--batch", "3", "--steps", "1") == 2
    assert "not divisible by the world size 2" in capsys.readouterr().err


@pytest.mark.slow
def test_image_only_folder(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    out = tmp_path / "run"
    assert run(out, "--images", str(folder), "--steps", "2", "--log-every", "1", "--freeze-local") == 0
    recs = stats(out)
    assert recs[0]["r1_seg"] == 0 and recs[0]["r1_img"] > 0
    ck = load_checkpoint(out / "checkpoints" / "0000002.safetensors")
    seed_everything(0)  # the run's initial weights: seed 0, G then D
    G0, D0 = SemanticGenerator(preset("tiny")), DualBranchDiscriminator(preset("tiny"))
    g, e = ck.g.state_dict(), ck.g_ema.state_dict()
    for k, v in G0.state_dict().items():
        if k.startswith(("local_nets.", "pos_embed.")):
            assert torch.equal(g[k], v) and torch.equal(e[k], v), k  # --freeze-local
    assert any(not torch.equal(g[k], v) for k, v in G0.state_dict().items() if k.startswith("render_net."))
    d = ck.d.state_dict()
    for k, v in D0.state_dict().items():
        if k.startswith("convs_seg."):
            assert torch.equal(d[k], v), k  # image-only: D's seg branch is never used
    assert any(not torch.equal(d[k], v) for k, v in D0.state_dict().items() if k.startswith("convs_img."))


# torchrun runs this: train.py's main, then this rank's parameter digests in HASHES/rank<r>.json
_TRAIN_AND_DIGEST = r"""
import json, os, sys
from pathlib import Path
from ssgan.train import loop
from ssgan.train.state import TrainState

states = []
new = TrainState.new
TrainState.new = classmethod(lambda cls, *a, **k: states.append(new(*a, **k)) or states[-1])
hashes, argv = Path(sys.argv[1]), sys.argv[2:]
code = loop.main(argv)
if states:
    hashes.mkdir(parents=True, exist_ok=True)
    rank = int(os.environ["RANK"])
    (hashes / f"rank{rank}.json").write_text(json.dumps(
        {"rank": rank, "world_size": int(os.environ["WORLD_SIZE"]), **states[-1].param_digest()}))
sys.exit(code)
"""


@pytest.mark.slow
def test_ddp_two_processes_gloo(tmp_path):
    out, hashes, script = tmp_path / "ddp", tmp_path / "hashes", tmp_path / "train_and_digest.py"
    script.write_text(_TRAIN_AND_DIGEST)
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(script), str(hashes), *BASE, "--steps", "3", "--log-every", "1", "--outdir", str(out)]
    res = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    r0 = json.loads((hashes / "rank0.json").read_text())
    r1 = json.loads((hashes / "rank1.json").read_text())
    assert r0["world_size"] == r1["world_size"] == 2
    for k in ("g", "d", "g_ema"):
        assert r0[k] == r1[k], k
    assert [r["step"] for r in stats(out)] == [1, 2, 3]
    ck = load_checkpoint(out / "checkpoints" / "0000003.safetensors")
    assert "rank1.rng.torch_cpu" in ck.tensors  # every rank's RNG state is saved
    assert ck.meta["world_size"] == 2

    bad = subprocess.run([*cmd[:-2], "--batch", "3", "--outdir", str(tmp_path / "bad")], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0
    assert "not divisible by the world size 2" in bad.stderr


@pytest.mark.slow
def test_init_from_checkpoint(tmp_path):
    from ssgan.checkpoint import save_checkpoint

    torch.manual_seed(123)
    cfg = preset("tiny")
    G, D = SemanticGenerator(cfg), DualBranchDiscriminator(cfg)
    init = save_checkpoint(tmp_path / "init.safetensors", cfg, g_ema=G, g=G, d=D)
    out = tmp_path / "run"
    assert run(out, "--init", str(init), "--steps", "1", "--lr", "0") == 0  # lr 0: weights stay
    ck = load_checkpoint(out / "checkpoints" / "0000001.safetensors")
    for module, ref in ((ck.g, G), (ck.g_ema, G), (ck.d, D)):
        got = module.state_dict()
        for k, v in ref.state_dict().items():
            assert torch.equal(got[k], v), k


@pytest.mark.slow
def test_freeze_local_ema_keeps_loaded_local_nets(tmp_path):
    """--freeze-local: G-EMA averages style and render_net only (as the official adaptation
    script), so its local generators stay as loaded even where G's differ."""
    from ssgan.checkpoint import save_checkpoint

    torch.manual_seed(7)
    cfg = preset("tiny")
    G, G_ema, D = SemanticGenerator(cfg), SemanticGenerator(cfg), DualBranchDiscriminator(cfg)
    init = save_checkpoint(tmp_path / "init.safetensors", cfg, g_ema=G_ema, g=G, d=D)
    out = tmp_path / "run"
    assert run(out, "--init", str(init), "--steps", "2", "--freeze-local") == 0
    ck = load_checkpoint(out / "checkpoints" / "0000002.safetensors")
    e, e0, g0 = ck.g_ema.state_dict(), G_ema.state_dict(), G.state_dict()
    local = [k for k in e0 if k.startswith(("local_nets.", "pos_embed.")) and not k.endswith("noise")]
    assert local and any(not torch.equal(e0[k], g0[k]) for k in local)
    for k in local:
        assert torch.equal(e[k], e0[k]), k
    assert any(not torch.equal(e[k], e0[k]) for k in e0 if k.startswith("render_net."))
    g = ck.g.state_dict()  # G-EMA's buffers (noise maps) are G's, copied once at set-up
    buffers = [k for k, _ in G.named_buffers() if k in e]
    assert buffers and any(not torch.equal(e0[k], g0[k]) for k in buffers)
    for k in buffers:
        assert torch.equal(e[k], g[k]), k


@pytest.mark.parametrize("flags, message", [
    (["--mixing", "2"], "--mixing"), (["--lr", "-1"], "--lr"), (["--betas", "1.5", "0.99"], "--betas"),
    (["--ema-kimg", "-0.5"], "--ema-kimg"),
    (["--ema-rampup", "-1"], "--ema-rampup"), (["--r1-img", "-1"], "--r1-img"),
    (["--d-reg-every", "0"], "--d-reg-every")])
def test_bad_hyper_parameters_one_line_error(tmp_path, capsys, flags, message):
    assert run(tmp_path / "x", "--steps", "1", *flags) == 2
    err = capsys.readouterr().err
    assert err.startswith("ssgan: error: ") and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x" / "checkpoints").exists()


@pytest.mark.slow
def test_resume_with_other_flags(tmp_path, capsys):
    out = tmp_path / "run"
    assert run(out, "--steps", "1") == 0
    capsys.readouterr()
    assert run(out, "--steps", "2", "--resume", "--freeze-local") == 2
    err = capsys.readouterr().err
    assert err.startswith("ssgan: error: ") and "--freeze-local" in err and "Traceback" not in err
    assert run(out, "--steps", "2", "--resume", "--lr", "0.001", "--betas", "0.5", "0.9") == 0
    assert "optimisers continue with the current values" in capsys.readouterr().out
    ck = load_checkpoint(out / "checkpoints" / "0000002.safetensors")
    r = 2 / 3  # g_reg_every 2
    group = ck.g_optim_state["param_groups"][0]
    assert group["lr"] == pytest.approx(0.001 * r)
    assert tuple(group["betas"]) == pytest.approx((0.5 ** r, 0.9 ** r))


@pytest.mark.slow
def test_ema_rampup_g_ema_follows_g_early(tmp_path, capsys):
    """With the ramp-up (the default) G-EMA is close to G after 30 steps; with the official fixed
    decay (--ema-rampup 0) it still holds most of the random initial weights. G is the same."""
    def flat(m):
        return torch.cat([p.detach().flatten() for p in m.parameters()])

    seed_everything(0)
    g0 = flat(SemanticGenerator(preset("tiny")))  # train.py's initial weights (seed 0)
    lag = {}
    for rampup in ("0.05", "0"):
        out = tmp_path / rampup
        assert run(out, "--steps", "30", "--ema-rampup", rampup, "--ckpt-every", "30") == 0
        ck = load_checkpoint(out / "checkpoints" / "0000030.safetensors")
        g, ema = flat(ck.g), flat(ck.g_ema)
        lag[rampup] = float((ema - g).norm() / (g0 - g).norm())  # 0: G-EMA = G, 1: still G's init
        assert ck.meta["train"]["ema_rampup"] == float(rampup)
        lag[rampup, "g"] = g
    assert torch.equal(lag["0.05", "g"], lag["0", "g"])  # the EMA does not touch training
    assert lag["0.05"] < 0.25 and lag["0"] > 0.8, lag
    # --resume keeps the run's schedule; a different flag is used, with a note
    capsys.readouterr()
    def saved_rampup(step):
        path = tmp_path / "0" / "checkpoints" / f"{step:07d}.safetensors"
        return load_checkpoint(path).meta["train"]["ema_rampup"]

    assert run(tmp_path / "0", "--steps", "31", "--resume") == 0
    assert saved_rampup(31) == 0
    assert "--ema-rampup" not in capsys.readouterr().out
    assert run(tmp_path / "0", "--steps", "32", "--resume", "--ema-rampup", "0.1") == 0
    assert "note: --ema-rampup 0.1 differs" in capsys.readouterr().out
    assert saved_rampup(32) == 0.1
