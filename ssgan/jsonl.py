"""JSON-lines logs (a training run's ``stats.jsonl`` and ``metrics.jsonl``, an encoder's
``stats.jsonl``): one JSON object per line, flushed at once, cut back to a step when a run
resumes from an earlier checkpoint."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class JsonlLogger:
    """Appends one JSON object per line to ``path`` (flushed each line)."""

    def __init__(self, path: str | os.PathLike, resume_step: int | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None:
            self.truncate_after(resume_step)
        self._f = open(self.path, "a", encoding="utf-8")  # noqa: SIM115

    def truncate_after(self, step: int) -> None:
        """Drop the lines logged after ``step`` (a run resumed from an earlier checkpoint)."""
        if not self.path.exists():
            return
        keep = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line
            if int(rec.get("step", 0)) <= step:
                keep.append(line)
        self.path.write_text("".join(k + "\n" for k in keep), encoding="utf-8")

    def log(self, record: dict[str, Any]) -> None:
        self._f.write(json.dumps(record) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()
