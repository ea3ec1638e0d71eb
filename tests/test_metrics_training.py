"""Metrics where users meet them: ``train.py --metrics`` (metrics.jsonl, best checkpoints, resume,
no effect on training, DDP) and ``ssgan metrics`` on a checkpoint from a short run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ssgan.checkpoint import load_checkpoint
from ssgan.cli import main as cli
from ssgan.data import open_dataset
from ssgan.data.synthetic import export_synthetic
from ssgan.metrics import compute
from ssgan.metrics.inception import default_weights
from ssgan.train import loop as train
from ssgan.train.rundir import latest_checkpoint, list_checkpoints

ROOT = Path(__file__).resolve().parents[1]

BASE = ["--preset", "tiny", "--batch", "4", "--length", "16", "--device", "cpu", "--log-every", "2"]
METRICS = ["--metrics", "maskfd8,maskiou8,maskfreq8", "--metrics-every", "2"]


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def run_with_metrics(tmp_path_factory):
    out = tmp_path_factory.mktemp("metrics") / "run"
    assert train.main([*BASE, *METRICS, "--steps", "5", "--ckpt-every", "2", "--keep", "2",
                       "--outdir", str(out)]) == 0
    return out


def _builtin(cfg):
    return open_dataset(None, None, None, cfg.size, cfg.seg_dim, length=16)


@pytest.mark.slow
def test_train_writes_metrics_jsonl_and_best_checkpoints(run_with_metrics):
    out = run_with_metrics
    recs = records(out)
    assert [(r["step"], r["metric"]) for r in recs] == [
        (s, m) for s in (2, 4, 5) for m in ("maskfd8", "maskiou8", "maskfreq8")]  # every 2, and the last
    for r in recs:
        assert set(r) == {"step", "kimg", "metric", "value", "seconds"}
        assert r["kimg"] == pytest.approx(r["step"] * 4 / 1000) and r["seconds"] > 0
    ckpts = sorted(p.name for p in (out / "checkpoints").iterdir())
    # --keep 2 rotated the step checkpoints but left the best ones; listing ignores them
    assert ckpts == ["0000004.safetensors", "0000005.safetensors", "best-maskfd8.safetensors",
                     "best-maskfreq8.safetensors", "best-maskiou8.safetensors", "latest.safetensors"]
    assert os.readlink(out / "checkpoints" / "latest.safetensors") == "0000005.safetensors"
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["0000004.safetensors",
                                                                       "0000005.safetensors"]
    assert latest_checkpoint(out / "checkpoints").name == "0000005.safetensors"
    fd = [r for r in recs if r["metric"] == "maskfd8"]
    best = min(fd, key=lambda r: r["value"])
    ck = load_checkpoint(out / "checkpoints" / "best-maskfd8.safetensors")
    assert ck.step == best["step"] and ck.meta["value"] == best["value"] and ck.g_ema is not None
    # the best checkpoint's G-EMA reproduces its logged value (same seed, same batches)
    again = compute("maskfd8", ck.g_ema, dataset=_builtin(ck.config), batch=8, cache_dir=None, progress=False)
    assert again["metrics"]["maskfd8"] == pytest.approx(best["value"], rel=1e-6)


@pytest.mark.slow
def test_resume_keeps_metrics_and_best(run_with_metrics, tmp_path):
    out = tmp_path / "run"
    subprocess.run(["cp", "-r", str(run_with_metrics), str(out)], check=True)
    assert train.main([*BASE, *METRICS, "--steps", "6", "--ckpt-every", "2", "--keep", "1", "--outdir",
                       str(out), "--resume"]) == 0
    steps = [r["step"] for r in records(out)]
    assert steps == [2, 2, 2, 4, 4, 4, 5, 5, 5, 6, 6, 6]


@pytest.mark.slow
def test_metrics_do_not_change_training(run_with_metrics, tmp_path):
    out = tmp_path / "plain"
    assert train.main([*BASE, "--metrics", "none", "--steps", "4", "--ckpt-every", "2",
                       "--outdir", str(out)]) == 0
    assert not (out / "metrics.jsonl").exists()
    a = load_checkpoint(out / "checkpoints" / "0000004.safetensors").g_ema.state_dict()
    b = load_checkpoint(run_with_metrics / "checkpoints" / "0000004.safetensors").g_ema.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_train_metric_errors_are_one_line(tmp_path, capsys):
    assert train.main([*BASE, "--metrics", "fid8x", "--steps", "1", "--outdir", str(tmp_path / "a")]) == 2
    assert "unknown metric 'fid8x'" in capsys.readouterr().err
    export_synthetic(tmp_path / "data", 4, 32)
    assert train.main([*BASE, "--images", str(tmp_path / "data" / "images"), "--metrics", "maskfd8",
                       "--steps", "1", "--outdir", str(tmp_path / "b")]) == 2
    assert "no labels" in capsys.readouterr().err


@pytest.mark.slow
def test_ddp_metrics_split_and_gathered(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "train.py"), *BASE, "--steps", "2", "--ckpt-every", "2",
           "--metrics", "maskfd16,maskiou16", "--metrics-every", "2", "--outdir", str(out)]
    res = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    recs = records(out)  # rank 0 alone writes
    assert [(r["step"], r["metric"]) for r in recs] == [(2, "maskfd16"), (2, "maskiou16")]
    # per-rank batch 2, evaluation batch 8: two batches, one per rank; a single process agrees
    g_ema = load_checkpoint(out / "checkpoints" / "0000002.safetensors").g_ema
    single = compute("maskfd16,maskiou16", g_ema, dataset=_builtin(g_ema.config), batch=8, cache_dir=None,
                     progress=False)["metrics"]
    assert single["maskfd16"] == pytest.approx(recs[0]["value"], rel=1e-6)
    assert single["maskiou16"] == pytest.approx(recs[1]["value"], rel=1e-6)


@pytest.mark.slow
def test_cli_metrics_on_a_trained_checkpoint(run_with_metrics, tmp_path, capsys):
    ckpt = run_with_metrics / "checkpoints" / "0000004.safetensors"
    names = "maskfd8,maskfreq8,maskiou8" + (",fid2,kid2" if default_weights() is not None else "")
    assert cli(["metrics", str(ckpt), "--metrics", names, "--batch", "4", "--cache-dir", str(tmp_path / "c"),
                "--out", str(tmp_path / "m.json"), "--quiet", "--device", "cpu"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split() == ["metric", "value", "n_gen", "n_real", "seconds"]
    doc = json.loads((tmp_path / "m.json").read_text())
    assert set(doc["metrics"]) == set(names.split(","))
    for name in names.split(","):
        d = doc["details"][name]
        assert d["n_gen"] == int(name.rstrip("k").lstrip("abcdefghijklmnopqrstuvwxyz")) and d["seconds"] > 0
        assert name in table
        if name.startswith(("fid", "kid")):
            assert len(d["extractor"]["sha256"]) == 64
        else:
            assert d["extractor"] is None


@pytest.mark.parametrize("extra, message", [
    (["--metrics", "maskfd8", "--images", "{tmp}/small/images", "--labels", "{tmp}/small/labels"],
     "is 16x16 px but the generator makes 32 px images"),
    (["--metrics", "maskfd8", "--images", "{tmp}/ok/images"], "no labels"),
    (["--metrics", "fid8", "--inception", "{tmp}/small/labels/0.png"], "not a PyTorch weights file"),
    (["--metrics", "fid8k_ful"], "unknown metric"),
    (["--metrics", "maskfd8", "--batch", "0"], "--batch must be >= 1"),
])
@pytest.mark.slow
def test_cli_metrics_bad_input(run_with_metrics, tmp_path, capsys, extra, message):
    export_synthetic(tmp_path / "small", 2, 16)
    export_synthetic(tmp_path / "ok", 2, 32)
    ckpt = run_with_metrics / "checkpoints" / "0000004.safetensors"
    with pytest.raises(SystemExit) as e:
        cli(["metrics", str(ckpt), "--quiet", "--cache-dir", str(tmp_path / "c"),
             *[a.format(tmp=tmp_path) for a in extra]])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
