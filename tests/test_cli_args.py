"""The shape of the ``ssgan`` command line: every subcommand's help shows its defaults, the common
arguments are spelled once, old spellings keep working, and only bad input becomes one line (a
bug keeps its traceback). Parser-level, plus one tiny checkpoint for the error paths."""

from __future__ import annotations

import argparse

import pytest
import torch

from ssgan import SemanticGenerator, preset
from ssgan.checkpoint import save_checkpoint
from ssgan.cli import COMMANDS, build_parser, expected_errors, main
from ssgan.cli_flags import commands
from ssgan.cliargs import CLIError, DeprecatedAlias
from ssgan.data.base import DatasetError
from ssgan.edit import editing as E


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    """Every command's parser, nested actions included (``"data inspect"``)."""
    return dict(commands(build_parser()))


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ck") / "tiny.safetensors"
    return str(save_checkpoint(path, preset("tiny"), g_ema=SemanticGenerator(preset("tiny"))))


def test_every_help_shows_the_defaults():
    subs = _subparsers()
    assert set(subs) >= {"convert", "info", "generate", "mix", "components", "interpolate", "metrics",
                         "invert", "direction", "edit", "encoder train", "data inspect", "data from-colors",
                         "data celebamask", "data synthetic", "serve", "train", "plot"}
    for name, q in subs.items():
        text = _flat(q.format_help())
        for action in q._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"ssgan {name}: {action.option_strings or action.dest} has no help text"
            flag = action.option_strings[-1] if action.option_strings else action.dest
            if action.required or not action.option_strings or action.help == argparse.SUPPRESS:
                continue  # (a hidden alias)
            if action.default is None or action.default is False or action.default == argparse.SUPPRESS:
                # its help says what happens without it
                assert "default" in action.help.lower(), f"ssgan {name} {flag}: {action.help!r}"
            else:
                assert f"(default: {action.default})" in text, f"ssgan {name} {flag}: default not shown"


def test_common_arguments_are_spelled_once():
    """--device, --truncation, --generator, --outdir, --quiet: one type, default and help everywhere."""
    seen: dict[str, tuple] = {}
    for name, q in _subparsers().items():
        for action in q._actions:
            for flag in ("--device", "--truncation", "--generator", "--outdir", "--quiet"):
                if flag in action.option_strings:
                    key = ((action.dest, action.type, action.default) if flag == "--outdir"  # own help
                           else (tuple(action.option_strings), action.type, action.default, action.help))
                    assert seen.setdefault(flag, key) == key, f"ssgan {name} {flag} differs"
    assert set(seen) == {"--device", "--truncation", "--generator", "--outdir", "--quiet"}


def test_classes_one_spelling_with_aliases():
    p = build_parser()
    a = p.parse_args(["interpolate", "ck", "--outdir", "o", "--class", "hair"])
    b = p.parse_args(["interpolate", "ck", "--outdir", "o", "--classes", "hair"])
    assert a.classes == b.classes == ["hair"]
    m = p.parse_args(["mix", "ck", "--outdir", "o", "--source", "s", "--reference", "r", "--classes", "hair",
                      "7,2"])
    assert m.classes == ["hair", "7,2"]
    for name in ("direction", "edit"):
        q = _subparsers()[name]
        assert next(x for x in q._actions if x.dest == "classes").nargs == "+"


def test_direction_labels_is_a_deprecated_alias_of_attributes(capsys):
    p = build_parser()
    base = ["direction", "ck", "--latents", "L", "--attribute", "smiling", "--out", "d.npy"]
    new = p.parse_args([*base, "--attributes", "a.csv"])
    assert capsys.readouterr().err == ""
    old = p.parse_args([*base, "--labels", "a.csv"])
    assert old.attributes == new.attributes == "a.csv"
    assert capsys.readouterr().err == "warning: --labels is deprecated; use --attributes\n"
    action = next(a for a in _subparsers()["direction"]._actions if a.dest == "attributes")
    assert isinstance(action, DeprecatedAlias) and action.deprecated == ("--labels",)


def test_bad_device_is_one_line(ckpt, capsys):
    with pytest.raises(SystemExit) as info:
        main(["components", ckpt, "--outdir", "unused", "--device", "gpu0"])
    assert info.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            main(["components", ckpt, "--outdir", "unused", "--device", "cuda"])
        assert "no CUDA device here; use --device cpu" in capsys.readouterr().err


def test_expected_errors_collect_each_modules():
    errors = expected_errors()
    assert CLIError in errors and DatasetError in errors
    for module in COMMANDS:
        assert set(getattr(module, "ERRORS", ())) <= set(errors)
        assert callable(module.add_parser)


@pytest.mark.parametrize("bug", [ValueError("bad shape in a kernel"), RuntimeError("CUDA error"),
                                 KeyError("g_ema"), FileNotFoundError("no filename: a bug")])
def test_a_real_bug_keeps_its_traceback(ckpt, tmp_path, monkeypatch, capsys, bug):
    def broken(*args, **kwargs):
        raise bug

    monkeypatch.setattr(E, "components", broken)
    with pytest.raises(type(bug)) as info:
        main(["components", ckpt, "--outdir", str(tmp_path), "--device", "cpu"])
    assert info.value is bug
    assert "ssgan: error" not in capsys.readouterr().err


def test_a_missing_named_file_is_one_line(ckpt, tmp_path, monkeypatch, capsys):
    def missing(*args, **kwargs):
        raise FileNotFoundError(2, "No such file or directory", str(tmp_path / "gone.png"))

    monkeypatch.setattr(E, "components", missing)
    with pytest.raises(SystemExit) as info:
        main(["components", ckpt, "--outdir", str(tmp_path), "--device", "cpu"])
    assert info.value.code == 2
    assert capsys.readouterr().err == f"ssgan: error: {tmp_path / 'gone.png'}: no such file\n"


def test_an_outdir_that_is_a_file_is_one_line(ckpt, tmp_path, capsys):
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(SystemExit) as info:
        main(["components", ckpt, "--outdir", str(tmp_path / "taken"), "--device", "cpu"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "taken" in err, err


def test_a_command_may_return_its_exit_status(ckpt, tmp_path, monkeypatch):
    from ssgan.edit import commands

    monkeypatch.setattr(commands, "cmd_components", lambda args: 3)
    assert main(["components", ckpt, "--outdir", str(tmp_path), "--device", "cpu"]) == 3
