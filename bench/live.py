"""A live ``ssgan serve`` process on 127.0.0.1 for the API fuzz test and the soak (``bench.soak``).

:class:`LiveServer` starts ``python -m ssgan serve CKPT --port 0`` with this checkout first on the
path, reads the address it prints, and stops it (SIGTERM, then SIGKILL after 10 s) on exit. Its
``pid`` is the server's, for reading its memory and open descriptors from ``/proc``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "data" / "serve_tiny.safetensors"


class LiveServer:
    """``with LiveServer(args) as server: server.url …`` (``args``: extra ``ssgan serve`` flags)."""

    def __init__(self, args: Sequence[str] = (), ckpt: Path = TINY, start_timeout: float = 120):
        self.log = tempfile.NamedTemporaryFile("w+", prefix="ssgan-serve-", suffix=".log")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ssgan", "serve", str(ckpt), "--host", "127.0.0.1", "--port", "0",
             "--threads", "1", *args], stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.pid = self.proc.pid
        self.printed = ""
        end = time.monotonic() + start_timeout
        while time.monotonic() < end and self.alive():
            found = re.search(r"(http://127\.0\.0\.1:\d+)/", self.output())
            if found:
                self.url = found.group(1)
                return
            time.sleep(0.1)
        raise RuntimeError("ssgan serve did not start: " + self.stop()[-2000:])

    def output(self) -> str:
        """What the server printed so far (its address, then tracebacks of 500s, if any)."""
        with open(self.log.name) as f:
            return f.read()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> str:
        """Stop the server; what it printed (:meth:`output`)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.log.closed:
            self.printed = self.output()
            self.log.close()
        return self.printed

    def __enter__(self) -> LiveServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
