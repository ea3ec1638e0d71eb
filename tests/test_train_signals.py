"""The training run's command line (``RunSpec.from_args``: checked without building a model) and
its reliability: SIGTERM / Ctrl-C stop at a step boundary with a checkpoint and exit 0, the
resumed run reproduces the uninterrupted one, ``--resume auto|never|PATH``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ssgan.model import generator as generator_module
from ssgan.train.rundir import checkpoint_path
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
    assert (s.mixing, s.d_reg_every, s.betas) == (PAPER.mixing, PAPER.d_reg_every, PAPER.betas)
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


def test_existing_checkpoints_without_resume(tmp_path, no_models):
    ckpt = checkpoint_path(tmp_path / "run" / "checkpoints", 4)
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"x")
    with pytest.raises(TrainError, match="already holds checkpoints"):
        spec(tmp_path)
    assert spec(tmp_path, "--resume").resume_path == ckpt


def test_argparse_rejects(tmp_path, no_models, capsys):
    with pytest.raises(SystemExit):
        spec(tmp_path, "--r1-img", "x")
    assert "expected a number or 'auto'" in capsys.readouterr().err
