"""The one error of the checkpoint package, and the one-line form of any exception it reports."""

from __future__ import annotations


class CheckpointError(Exception):
    """A checkpoint could not be read or written; the message is one line naming the file."""


def one_line(e: BaseException) -> str:
    """``"<type>: <first line of the message>"`` (just the type when the message is empty)."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__
