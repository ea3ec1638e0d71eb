"""The training command line as declared once (``ssgan.train.options``): every option is one field
with one flag, the parser and ``TrainConfig`` are built by walking the fields, ``python train.py``
and ``ssgan train`` show the same help and the same one-line errors, old spellings still work
(hidden, with one warning line), and a run on the built-in data stores its class names."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ssgan import cli, preset
from ssgan.checkpoint import load_checkpoint
from ssgan.data import SyntheticFaces, open_dataset
from ssgan.train import loop as train
from ssgan.train import steps as T
from ssgan.train.options import flag_of, option, option_fields, parse_defaults
from ssgan.train.spec import DEPARTURES, RunSpec, build_parser

ROOT = Path(__file__).resolve().parents[1]
ONE_STEP = ["--steps", "1", "--batch", "4", "--length", "8", "--metrics", "none", "--device", "cpu",
            "--threads", "1", "--sample-every", "100"]


def _flags(p: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in p._actions for s in a.option_strings}


def _ssgan_train() -> argparse.ArgumentParser:
    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["train"]


def test_train_py_help_is_ssgan_train_help(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit) as info:
        train.main(["--help"])  # what python train.py --help runs
    assert info.value.code == 0
    train_py = capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    assert capsys.readouterr().out == train_py
    assert "--class-names FILE" in train_py and "--count N" in train_py and "--outdir DIR" in train_py


def test_train_py_bad_flag_is_one_line():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), "--batch", "x"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr == "ssgan: error: argument --batch: invalid int value: 'x'\n", proc.stderr


def test_every_option_field_has_exactly_one_flag():
    flags = _flags(build_parser())
    fields = [(cls, f) for cls in (RunSpec, T.TrainConfig) for f in option_fields(cls)]
    assert {f.name for f in dataclasses.fields(T.TrainConfig)} - {f.name for _, f in fields} == {"use_seg"}
    spelled = [flag_of(cls, f.name) for cls, f in fields]
    assert len(spelled) == len(set(spelled))
    for cls, f in fields:
        action = flags[flag_of(cls, f.name)]
        assert action.dest == f.name and action.help and action.help != argparse.SUPPRESS
    # nothing else sets a run field: the other flags are --help and the model's (ssgan.model.config)
    dests = {a.dest for a in flags.values()} - {"help", "config"}
    assert {d for d in dests if not d.startswith("cfg_")} == {f.name for _, f in fields}
    # the parser's defaults are the fields' (the paper's), except the run's departures
    parsed = vars(build_parser().parse_args([]))
    paper = parse_defaults(T.TrainConfig)
    assert {k for k in paper if parsed[k] != paper[k]} == set(DEPARTURES)
    assert RunSpec().objective == {k: parsed[k] for k in paper}


def test_a_new_training_option_needs_one_field(tmp_path, monkeypatch):
    """A field added to TrainConfig is a flag with its help and reaches the TrainConfig of the run."""

    @dataclasses.dataclass
    class WithKnob(T.TrainConfig):
        knob_weight: float = option(0.5, "a new hyper-parameter", group=T.OBJECTIVE)

    monkeypatch.setattr(T, "TrainConfig", WithKnob)
    assert "--knob-weight KNOB_WEIGHT" in build_parser().format_help()
    assert "--knob-weight" in _flags(_ssgan_train())
    for argv, value in (([], 0.5), (["--knob-weight", "0.25"], 0.25)):
        spec = RunSpec.from_args(["--outdir", str(tmp_path / "run"), *argv], world_size=1)
        tc, _ = spec.train_config(preset("tiny"), True, None)
        assert isinstance(tc, WithKnob) and tc.knob_weight == value
        assert spec.to_meta()["knob_weight"] == value


@pytest.mark.parametrize("old, new, value", [("--out", "--outdir", "elsewhere"),
                                             ("--classes", "--class-names", "names.json"),
                                             ("--n-sample", "--count", "3")])
def test_deprecated_spellings_warn_once_and_mean_the_same(tmp_path, capsys, old, new, value):
    base = ["--outdir", str(tmp_path / "run")] if old != "--out" else []
    value = str(tmp_path / value) if old == "--out" else value
    current = RunSpec.from_args([*base, new, value], world_size=1)
    assert capsys.readouterr().err == ""
    deprecated = RunSpec.from_args([*base, old, value], world_size=1)
    assert deprecated == current
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and f"{old} is deprecated" in err[0] and new in err[0], err
    for p in (build_parser(), _ssgan_train()):
        usage_and_help = p.format_help()
        assert new in usage_and_help and f"{old} " not in usage_and_help and f"{old}," not in usage_and_help


def test_official_underscore_spellings_are_hidden_aliases(tmp_path, capsys):
    argv = ["--outdir", str(tmp_path / "run")]
    official = {"--r1_img": "0.5", "--r1_seg": "7", "--d_reg_every": "3", "--g_reg_every": "5",
                "--path_regularize": "1", "--path_batch_shrink": "4", "--lambda_mask": "10"}
    old = RunSpec.from_args([*argv, *[x for kv in official.items() for x in kv], "--freeze_local"],
                            world_size=1)
    new = RunSpec.from_args([*argv, *[x for k, v in official.items() for x in (k.replace("_", "-"), v)],
                             "--freeze-local"], world_size=1)
    assert old == new and new.objective["r1_img"] == 0.5 and new.objective["freeze_local"] is True
    assert capsys.readouterr().err == ""
    text = build_parser().format_help()
    assert not any(k in text for k in [*official, "--freeze_local"])


def test_built_in_data_names_its_classes():
    names = ("background", "face", "eyes", "mouth", "glasses")
    assert SyntheticFaces(32, 1).class_names == names
    assert SyntheticFaces(32, 1, seg_dim=9).class_names == (*names, "rectangle5", "triangle6", "disc7",
                                                            "rectangle8")
    assert preset("tiny").transparent_dims == (names.index("glasses"),)  # the alpha-blended class
    cached = open_dataset(None, None, None, 8, 6, length=2, cache=True)  # the cache keeps them
    assert cached.class_names == (*names, "rectangle5")


@pytest.mark.slow
def test_a_built_in_run_stores_the_class_names(tmp_path, capsys):
    out = tmp_path / "run"
    assert train.main([*ONE_STEP, "--outdir", str(out)]) == 0
    ckpt = out / "checkpoints" / "0000001.safetensors"
    assert load_checkpoint(ckpt).classes.names == ("background", "face", "eyes", "mouth", "glasses")
    capsys.readouterr()
    assert cli.main(["info", str(ckpt)]) == 0
    assert "classes: 0 background, 1 face, 2 eyes, 3 mouth, 4 glasses" in capsys.readouterr().out
    # a classes.json still names them (--class-names), over the data's own names
    names = tmp_path / "classes.json"
    names.write_text(json.dumps({"classes": ["sky", "skin", "iris", "lips", "specs"], "transparent": [4]}))
    assert train.main([*ONE_STEP, "--outdir", str(tmp_path / "named"), "--class-names", str(names)]) == 0
    named = load_checkpoint(tmp_path / "named" / "checkpoints" / "0000001.safetensors")
    assert named.classes.names == ("sky", "skin", "iris", "lips", "specs")
