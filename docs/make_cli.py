"""docs/cli.md, written from the parsers of every ``ssgan`` command (:func:`ssgan.cli_flags.markdown`):

    python docs/make_cli.py
"""

from pathlib import Path

from ssgan.cli import build_parser
from ssgan.cli_flags import markdown

if __name__ == "__main__":
    out = Path(__file__).resolve().parent / "cli.md"
    out.write_text(markdown(build_parser()))
    print(f"wrote {out}")
