"""One meaning per flag across every ``ssgan`` command (ssgan.cli_flags, docs/cli.md): the walk over
all parsers finds no flag name with two kinds of value, a planted conflict is found, every shared
flag has its written meaning, deprecated spellings are hidden, warn once and do what the new
spelling does, and the ``python -m`` forms are the same commands with the same error line."""

from __future__ import annotations

import importlib
import re
import runpy
import sys
from pathlib import Path

import pytest

from ssgan import cliargs as A
from ssgan.cli import build_parser
from ssgan.cli_flags import MEANINGS, commands, conflicts, deprecated, kind, markdown, shared

ROOT = Path(__file__).resolve().parents[1]


def test_every_flag_has_one_meaning_across_all_commands():
    """Train included (``ssgan train`` is ``python train.py``'s parser)."""
    found = conflicts(build_parser())
    assert not found, "flags with two meanings:\n" + "\n".join(found)


def _planted(out_dir_kind: str) -> A.Parser:
    p = A.Parser(prog="planted")
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("write-file")
    A.add_out(a, "the file written")
    A.add_classes(a, "classes")
    b = sub.add_parser("write-folder")
    b.add_argument("--out", metavar=out_dir_kind, help="a folder, by the same name")
    b.add_argument("--classes", metavar="JSON", help="a class-names file, by the same name")
    c = sub.add_parser("old")
    A.add_argument(c, "--attributes", deprecated=("--out",), metavar="CSV", help="deprecated --out: exempt")
    d = sub.add_parser("paths")
    d.add_argument("--out", metavar="PATH", help="a file or a folder: compatible with a file")
    return p


def test_a_planted_conflict_is_found():
    found = conflicts(_planted("DIR"))
    assert [line.split(":")[0] for line in found] == ["--classes", "--out"], found
    assert "write-file: file" in found[1] and "write-folder: folder" in found[1] and "old:" not in found[1]
    assert "write-file: names" in found[0] and "write-folder: file" in found[0]
    assert conflicts(_planted("FILE")) == [found[0]]  # the same kind: no conflict on --out


def test_kind():
    q = A.Parser()
    q.add_argument("--quiet", action="store_true")
    q.add_argument("--steps", type=int)
    q.add_argument("--metrics")
    q.add_argument("--resume", nargs="?", const="auto", metavar="PATH")
    q.add_argument("--out", metavar="FILE")
    q.add_argument("--outdir", metavar="DIR")
    q.add_argument("--images", nargs="+", metavar="PATH")
    q.add_argument("--classes", nargs="+", metavar="CLASS")
    q.add_argument("--part", choices=("a", "b"))
    assert [kind(a) for a in q._actions[1:]] == ["switch", "number", "text", "switch or value", "file",
                                                 "folder", "path", "names", "choice"]


def test_every_shared_flag_has_its_written_meaning():
    flags = set(shared(build_parser()))
    assert not flags - set(MEANINGS), f"write the meaning of {sorted(flags - set(MEANINGS))} in MEANINGS"
    assert not set(MEANINGS) - flags, f"no longer shared: {sorted(set(MEANINGS) - flags)}"


def test_docs_cli_md_is_written_from_the_parsers():
    assert (ROOT / "docs" / "cli.md").read_text() == markdown(build_parser()), "run python docs/make_cli.py"


def test_deprecated_spellings_are_hidden_from_help():
    subs = dict(commands(build_parser()))
    spellings = deprecated(build_parser())
    assert {(old, name) for old, _, name in spellings} >= {
        ("--json FILE", "metrics"), ("--labels CSV", "direction"), ("--n N", "data synthetic"),
        ("--png FILE", "data inspect"), ("DST (positional)", "convert")}
    for old, new, name in spellings:
        flag = old.split()[0]
        text = subs[name].format_help()
        shown = re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text)
        assert not shown, f"ssgan {name} --help shows {flag}"
        assert new.split()[0] in text


@pytest.mark.parametrize("old, new, warning", [
    (["metrics", "ck", "--json", "r.json"], ["metrics", "ck", "--out", "r.json"],
     "--json is deprecated; use --out"),
    (["direction", "ck", "--latents", "L", "--attribute", "a", "--out", "d.npy", "--labels", "a.csv"],
     ["direction", "ck", "--latents", "L", "--attribute", "a", "--out", "d.npy", "--attributes", "a.csv"],
     "--labels is deprecated; use --attributes"),
    (["data", "synthetic", "D", "--n", "3"], ["data", "synthetic", "D", "--count", "3"],
     "--n is deprecated; use --count"),
    (["data", "inspect", "D", "--png", "p.png"], ["data", "inspect", "D", "--out", "p.png"],
     "--png is deprecated; use --out"),
    (["convert", "a.pt", "b.safetensors"], ["convert", "a.pt", "--out", "b.safetensors"],
     "the positional DST is deprecated; use --out DST"),
])
def test_a_deprecated_spelling_warns_once_and_does_the_same(old, new, warning, capsys):
    p = build_parser()
    assert p.parse_args(old) == p.parse_args(new)
    assert capsys.readouterr().err == f"warning: {warning}\n"
    p.parse_args(new)
    assert capsys.readouterr().err == ""


def test_count_has_one_spelling():
    p = build_parser()
    assert p.parse_args(["generate", "ck", "--outdir", "o", "-n", "3"]).count == 3
    assert p.parse_args(["generate", "ck", "--outdir", "o", "--count", "3"]).count == 3
    assert p.parse_args(["data", "synthetic", "D", "-n", "5"]).count == 5


def test_convert_needs_its_output(capsys):
    with pytest.raises(A.CLIError, match="required: --out"):
        build_parser().parse_args(["convert", "a.pt"])
    with pytest.raises(A.CLIError, match="give --out FILE once"):
        build_parser().parse_args(["convert", "a.pt", "c", "--out", "b"])
    assert capsys.readouterr().err == ""
    usage = dict(commands(build_parser()))["convert"].format_help()
    assert "usage: ssgan convert [-h] --out FILE SRC" in usage


@pytest.mark.parametrize("module, argv, says", [
    ("ssgan.data", ["inspect", "/no/such/folder", "--quiet"], "error: /no/such/folder has no images/ folder"),
    ("ssgan.data", ["synthetic", "D", "--seg-dim", "3"], "seg_dim"),
    ("ssgan.data", ["frobnicate"], "invalid choice"),
    ("ssgan.train.plot", ["/no/such/run"], "stats.jsonl"),
    ("ssgan.train.plot", ["r", "--smooth", "1"], "--smooth must lie in [0, 1)"),
    ("ssgan.serve", ["/no/such.safetensors", "--device", "cpu"], "does not exist"),
    ("ssgan.serve", [], "required: CKPT"),
])
@pytest.mark.filterwarnings("ignore:.*found in sys.modules after import")  # imported by other tests
def test_module_entry_points_are_the_ssgan_commands(module, argv, says, monkeypatch, capsys):
    """``python -m MODULE`` (run here as ``__main__``): one line ``ssgan: error: …``, exit 2."""
    monkeypatch.setattr(sys, "argv", [module, *argv])
    with pytest.raises(SystemExit) as info:
        runpy.run_module(module, run_name="__main__", alter_sys=False)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("ssgan: error: ") and err.count("\n") == 1 and says in err, err


@pytest.mark.parametrize("module, command", [
    ("ssgan.data.commands", ["data", "inspect"]), ("ssgan.train.plot", ["plot"]),
    ("ssgan.serve.commands", ["serve"])])
def test_module_help_is_the_subcommands_help(module, command, capsys):
    """The same arguments and help below the usage line (whose program name differs)."""
    with pytest.raises(SystemExit):
        importlib.import_module(module).main([*command[1:], "--help"])
    standalone = capsys.readouterr().out
    with pytest.raises(SystemExit):
        build_parser().parse_args([*command, "--help"])
    ssgan = capsys.readouterr().out
    assert standalone.startswith(f"usage: python -m {module.removesuffix('.commands')} ")
    assert standalone.split("\n\n", 1)[1] == ssgan.split("\n\n", 1)[1]


def test_one_parser_class_everywhere():
    """Every parser in ssgan/ (and train.py) is ssgan.cliargs.Parser: one error line everywhere."""
    plain = [str(p.relative_to(ROOT)) for p in [*(ROOT / "ssgan").rglob("*.py"), ROOT / "train.py"]
             if re.search(r"argparse\.ArgumentParser\(", p.read_text())]
    assert not plain, f"plain argparse parsers (use ssgan.cliargs.Parser): {plain}"
