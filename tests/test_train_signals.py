"""The training run's command line (``RunSpec.from_args``: checked without building a model) and
its reliability: SIGTERM / Ctrl-C stop at a step boundary with a checkpoint and exit 0, the
resumed run reproduces the uninterrupted one, ``--resume auto|never|PATH``."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from ssgan.cliargs import CLIError
from ssgan.model import generator as generator_module
from ssgan.train import loop as train
from ssgan.train import steps as T
from ssgan.train.outputs import StopRequest
from ssgan.train.rundir import checkpoint_path, list_checkpoints
from ssgan.train.spec import DEFAULT_BATCH, DEFAULT_PRESET, DEFAULT_STEPS, PAPER, RunSpec, TrainError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_models(monkeypatch):
    """Building a generator fails: the spec's checks must not need one."""
    def refuse(*a, **k):
        raise AssertionError("RunSpec.from_args built a model")

    monkeypatch.setattr(generator_module.SemanticGenerator, "__init__", refuse)


def spec(tmp_path: Path, *flags: str, world_size: int = 1) -> RunSpec:
    return RunSpec.from_args(["--outdir", str(tmp_path / "run"), *flags], world_size=world_size)


def test_defaults_come_from_the_spec(tmp_path, no_models):
    s = spec(tmp_path)
    fresh = RunSpec(outdir=tmp_path / "run")
    differ = [f.name for f in dataclasses.fields(RunSpec) if getattr(s, f.name) != getattr(fresh, f.name)]
    assert differ == [], differ  # the parser's defaults are RunSpec's
    assert (s.batch, s.steps, s.preset_name) == (DEFAULT_BATCH, DEFAULT_STEPS, DEFAULT_PRESET)
    assert {k: s.objective[k] for k in ("mixing", "d_reg_every", "betas")} == {
        "mixing": PAPER.mixing, "d_reg_every": PAPER.d_reg_every, "betas": PAPER.betas}
    assert RunSpec.from_args([], world_size=1).outdir == Path("runs/tiny")
    assert RunSpec.from_args(["--preset", "celeba-256"], world_size=1).outdir == Path("runs/celeba-256")
    assert spec(tmp_path, "--out", str(tmp_path / "x")).outdir == tmp_path / "x"  # the old spelling


@pytest.mark.parametrize("flags, world, message", [
    (["--batch", "6"], 4, "--batch 6 is not divisible by the world size 4"),
    (["--steps", "0"], 1, "--steps must be >= 1"),
    (["--log-every", "0"], 1, "--log-every must be >= 1"),
    (["--batch", "6"], 1, "per-rank batch 6 must be divisible by 4"),
])
def test_bad_combinations(tmp_path, no_models, flags, world, message):
    with pytest.raises(TrainError, match=message):
        spec(tmp_path, *flags, world_size=world)


def test_resume_auto_picks_the_newest_checkpoint(tmp_path):
    from ssgan import SemanticGenerator, preset
    from ssgan.checkpoint import save_checkpoint

    G = SemanticGenerator(preset("tiny"))
    for step in (2, 4):
        save_checkpoint(checkpoint_path(tmp_path / "run" / "checkpoints", step), G.config, g_ema=G, step=step)
    assert spec(tmp_path).resume_path == checkpoint_path(tmp_path / "run" / "checkpoints", 4)


def test_argparse_rejects(tmp_path, no_models):
    with pytest.raises(CLIError, match="argument --r1-img: expected a number or 'auto'"):
        spec(tmp_path, "--r1-img", "x")


def test_resume_values(tmp_path, no_models):
    assert spec(tmp_path).resume == "auto" and spec(tmp_path).resume_path is None  # empty folder: start
    assert spec(tmp_path, "--resume").resume == "auto"  # a bare --resume, as before
    ckpt = checkpoint_path(tmp_path / "run" / "checkpoints", 2)
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"x")
    other = checkpoint_path(tmp_path, 1)
    other.write_bytes(b"x")
    assert spec(tmp_path, "--resume", str(other)).resume_path == other
    with pytest.raises(TrainError, match="--resume never was given; choose another --outdir"):
        spec(tmp_path, "--resume", "never")
    with pytest.raises(TrainError, match="no such checkpoint file"):
        spec(tmp_path, "--resume", str(tmp_path / "nope.safetensors"))


# ----- stopping and continuing ----------------------------------------------------------------------

BASE = ["--preset", "tiny", "--batch", "4", "--length", "16", "--d-reg-every", "2", "--g-reg-every", "2",
        "--device", "cpu", "--metrics", "none", "--log-every", "1", "--sample-every", "100"]


def tensors(path: Path) -> dict[str, bytes]:
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k).reshape(-1).view(torch.uint8).numpy().tobytes() for k in f.keys()}


def logged_losses(out: Path) -> list[dict]:
    """Step and loss values of each ``stats.jsonl`` line (not the timings)."""
    lines = (out / "stats.jsonl").read_text().splitlines()
    return [{k: rec[k] for k in ("step", *T.LOSS_KEYS)} for rec in map(json.loads, lines)]


@pytest.mark.parametrize("sig", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)],
                         ids=["SIGTERM", "Ctrl-C"])
@pytest.mark.slow
def test_signal_checkpoint_exit_0_and_the_same_command_continues_exactly(sig, tmp_path, monkeypatch, capsys):
    """SIGTERM or Ctrl-C during step index 2: step 3 is finished and saved, exit 0, the handler is
    put back; the same command continues (--resume auto) to the uninterrupted run's bytes."""
    flags = [*BASE, "--steps", "6", "--ckpt-every", "100", "--mixing", "0.5", "--hflip"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert train.main([*flags, "--outdir", str(straight)]) == 0

    calls = {"n": 0}
    real_g_step = T.g_step

    def g_step_with_signal(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            os.kill(os.getpid(), sig)
        return real_g_step(*a, **k)

    handler = signal.getsignal(sig)
    monkeypatch.setattr(T, "g_step", g_step_with_signal)
    assert train.main([*flags, "--outdir", str(split)]) == 0
    monkeypatch.undo()
    assert f"{signal.Signals(sig).name}: finishing this step" in capsys.readouterr().err
    assert [p.name for p in list_checkpoints(split / "checkpoints")] == ["0000003.safetensors"]
    assert [r["step"] for r in logged_losses(split)] == [1, 2, 3]
    assert signal.getsignal(sig) is handler  # the handler is put back
    assert train.main([*flags, "--outdir", str(split)]) == 0  # the same command: --resume auto
    out = capsys.readouterr().out
    assert "resuming from" in out and "differ from" not in out  # same flags: no hyper-parameter note
    assert logged_losses(split) == logged_losses(straight)
    a = tensors(straight / "checkpoints" / "0000006.safetensors")
    b = tensors(split / "checkpoints" / "0000006.safetensors")
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []  # weights, optimisers, RNG states, running values


def test_other_configuration_is_an_error_not_a_resume(tmp_path, capsys):
    out = tmp_path / "run"
    assert train.main([*BASE, "--steps", "1", "--outdir", str(out)]) == 0
    capsys.readouterr()
    assert train.main([*BASE, "--steps", "2", "--outdir", str(out), "--local-layers", "3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ssgan: error: ") and "local_layers" in err and len(err.strip().splitlines()) == 1
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["0000001.safetensors"]


def _python(code: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_real_process_sigterm_twice_at_once_is_one_request(tmp_path):
    """A process signalled by its launcher and its scheduler together stops cleanly: exit 0, a
    checkpoint at the step where it stopped, the log up to that step."""
    out = tmp_path / "run"
    proc = _python(f"import sys; from ssgan.train.loop import main; "
                   f"sys.exit(main({[*BASE, '--steps', '100000', '--outdir', str(out)]!r}))")
    stats = out / "stats.jsonl"
    deadline = time.monotonic() + 120
    while not (stats.exists() and stats.read_text().count("\n") >= 2):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGTERM)  # within the duplicate window: the same request
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr[-2000:]
    ckpts = list_checkpoints(out / "checkpoints")
    last = json.loads(stats.read_text().splitlines()[-1])["step"]
    assert [p.name for p in ckpts] == [checkpoint_path(out, last).name] and last < 100000
    assert f"stopped at step {last}" in stdout


def test_a_second_signal_aborts_at_once():
    """The second signal, after the duplicate window, ends the process even while its main thread
    is busy (here: asleep); no checkpoint."""
    proc = _python("import os, signal, time\n"
                   "from ssgan.distributed import DistInfo\n"
                   "from ssgan.train.outputs import StopRequest\n"
                   "stop = StopRequest(DistInfo())\n"
                   "stop.install()\n"
                   "os.kill(os.getpid(), signal.SIGTERM)\n"
                   "time.sleep(0.01)\n"
                   "assert stop.requested\n"
                   "print('first', flush=True)\n"
                   "time.sleep(60)\n")
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "first"
    time.sleep(StopRequest.DUPLICATE_WINDOW + 0.2)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGINT and time.monotonic() - t0 < 10
    assert "SIGINT again: aborting, no checkpoint" in stderr


def test_ssgan_train_is_train_py(tmp_path, no_models, capsys):
    from ssgan import cli

    argv = ["--outdir", str(tmp_path / "run"), "--batch", "4", "--steps", "3", "--size", "64", "--resume",
            "never", "--r1-img", "0.5", "--betas", "0.1", "0.9", "--hflip", "--out", str(tmp_path / "other")]
    via_cli = RunSpec.from_namespace(cli.build_parser().parse_args(["train", *argv]), world_size=1)
    assert via_cli == RunSpec.from_args(argv, world_size=1)
    assert via_cli.outdir == tmp_path / "other" and via_cli.model_flags == {"cfg_size": 64}
    capsys.readouterr()
    assert cli.main(["train", "--steps", "0", "--outdir", str(tmp_path / "x")]) == 2  # train.py's status
    assert capsys.readouterr().err.strip() == "ssgan: error: --steps must be >= 1"
