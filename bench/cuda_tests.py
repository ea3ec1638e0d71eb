"""Stage 4 of a GPU session: the GPU parity suite (``pytest -m cuda``), its results in a JSON.

    python -m bench.cuda_tests --json OUT.json [--dry-run] [-- extra pytest arguments]

pytest runs in this process with a small plugin that records every test's outcome as it ends and
rewrites the JSON after each test, so a run stopped by its time cap (SIGINT: pytest stops after
the test in progress) still leaves the outcomes so far. The JSON: ``summary`` (pytest's closing
line, e.g. "3 failed, 120 passed, 400 deselected in 95.1s"), ``counts``, ``failed`` (test ids
with the first line of their error), ``exit_code``, ``complete``. ``--dry-run`` runs the same
selection on CPU, where every cuda test is skipped: it proves the stage runs, nothing more.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest

from bench.session import write_json

TESTS = ("tests",)


class Recorder:
    """pytest plugin: outcome counts, failures, and the JSON rewritten after each test."""

    def __init__(self, path: Path, report: dict):
        self.path, self.report = path, report
        self.counts: Counter = Counter()
        self.failed: list[dict] = []
        self.t0 = time.perf_counter()

    def summary(self) -> str:
        order = ("failed", "passed", "skipped", "deselected", "xfailed", "xpassed", "error")
        parts = [f"{self.counts[k]} {k if k != 'error' else 'errors'}" for k in order if self.counts[k]]
        return f"{', '.join(parts) or 'no tests ran'} in {time.perf_counter() - self.t0:.1f}s"

    def save(self) -> None:
        self.report.update(summary=self.summary(), counts=dict(self.counts), failed=self.failed)
        write_json(self.report, self.path)

    def pytest_deselected(self, items) -> None:
        self.counts["deselected"] += len(items)

    def pytest_runtest_logreport(self, report) -> None:
        if report.when == "call" or report.outcome != "passed":  # setup/teardown count only if not passed
            if hasattr(report, "wasxfail"):
                outcome = "xfailed" if report.skipped else "xpassed"
            elif report.outcome == "failed" and report.when != "call":
                outcome = "error"
            else:
                outcome = report.outcome
            self.counts[outcome] += 1
            if outcome in ("failed", "error"):
                text = str(report.longrepr).strip().splitlines()
                self.failed.append({"test": report.nodeid, "when": report.when,
                                    "error": text[-1][:300] if text else ""})
            self.save()

    def pytest_collectreport(self, report) -> None:
        if report.failed:
            self.counts["error"] += 1
            self.failed.append({"test": report.nodeid, "when": "collect",
                                "error": str(report.longrepr).strip().splitlines()[-1][:300]})


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.cuda_tests", description=__doc__.split("\n\n")[0])
    p.add_argument("--json", required=True)
    p.add_argument("--dry-run", action="store_true", help="on CPU: every cuda test skips")
    p.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = p.parse_args(argv)
    pytest_args = ["-m", "cuda", "-q", "-p", "no:cacheprovider", *TESTS, *args.pytest_args]
    report: dict = {"dry_run": args.dry_run, "command": "pytest " + " ".join(pytest_args), "summary": None,
                    "counts": {}, "failed": [], "exit_code": None, "complete": False}
    recorder = Recorder(Path(args.json), report)
    recorder.save()
    code = int(pytest.main(pytest_args, plugins=[recorder]))
    report.update(exit_code=code, complete=code != int(pytest.ExitCode.INTERRUPTED))
    recorder.save()
    print(f"pytest -m cuda: {report['summary']} (exit code {code})")
    ok = (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED)
    return 0 if code in ok else 1


if __name__ == "__main__":
    sys.exit(main())
