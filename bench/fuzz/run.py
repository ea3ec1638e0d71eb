"""Coverage-guided fuzzing of the loaders with atheris (libFuzzer for Python), one process per
harness (:mod:`bench.fuzz.targets`).

Usage (from the repository root; ``pip install -e '.[fuzz]'``)::

    python -m bench.fuzz.run safetensors --seconds 20          # one harness, bounded
    python -m bench.fuzz.run all --seconds 600 --json bench/results/fuzz.json   # the long run
    python -m bench.fuzz.run photo --reproduce crash-1234abcd  # replay one input

Each run starts from the committed seed corpus ``bench/fuzz/corpus/<name>/`` (made by
``python -m bench.fuzz.seeds``) plus what earlier runs found (``--work``, default a temporary
folder), with libFuzzer's per-input time limit (:data:`~bench.fuzz.targets.TIME_LIMIT_S`), memory
cap (:data:`~bench.fuzz.targets.RSS_LIMIT_MB` of resident memory for the whole process) and input
size (:data:`~bench.fuzz.targets.MAX_LEN`). A finding (another exception, a hang, the cap) stops
the harness and leaves its input as ``crash-*``/``timeout-*``/``oom-*`` in the work folder; the
report lists executions, coverage and findings per harness.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import hashlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CORPUS = HERE / "corpus"


def fuzz_in_this_process(name: str, libfuzzer_args: list[str], artifacts: Path) -> None:
    """The harness process: instrument ssgan, then let libFuzzer call the target (never returns).

    The per-input time limit is a watchdog thread (libFuzzer's own ``-timeout`` relies on a SIGALRM
    handler that Python does not run inside a long C call): an input running past
    :data:`~bench.fuzz.targets.TIME_LIMIT_S` is written to ``timeout-<sha1>`` with the main thread's
    stack, and the process exits with status 70."""
    import atheris

    with atheris.instrument_imports(include=["ssgan", "PIL", "numpy.lib"]):  # the loaders and parsers
        from bench.fuzz import targets
    target = targets.TARGETS[name]
    folder = Path(tempfile.mkdtemp(prefix=f"ssgan-fuzz-{name}-"))
    current: dict[str, object] = {"data": b"", "since": None}

    def watchdog() -> None:
        while True:
            time.sleep(0.25)
            since = current["since"]
            if since is not None and time.monotonic() - since > targets.TIME_LIMIT_S:
                data = bytes(current["data"])  # type: ignore[arg-type]
                out = artifacts / f"timeout-{hashlib.sha1(data).hexdigest()}"
                out.write_bytes(data)
                print(f"==ssgan-fuzz== input over {targets.TIME_LIMIT_S} s, saved as {out}", file=sys.stderr)
                faulthandler.dump_traceback(all_threads=True)
                os._exit(70)

    def one_input(data: bytes) -> None:
        current["data"], current["since"] = data, time.monotonic()
        targets.check(target, data, folder)
        current["since"] = None

    if name in ("encoder", "upload"):
        targets.generator()  # built before fuzzing, so its cost is not an input's
    if name == "upload":
        targets.editor()
    threading.Thread(target=watchdog, daemon=True).start()
    atheris.Setup([sys.argv[0], *libfuzzer_args], one_input)
    atheris.Fuzz()


def fuzz(name: str, seconds: float, work: Path) -> dict:
    """Run harness ``name`` for ``seconds`` in a subprocess; its executions, coverage and findings."""
    from bench.fuzz.targets import MAX_LEN, RSS_LIMIT_MB, TIME_LIMIT_S

    found = work / name
    found.mkdir(parents=True, exist_ok=True)
    args = [f"-max_total_time={int(seconds)}", f"-timeout={10 * TIME_LIMIT_S}",
            f"-rss_limit_mb={RSS_LIMIT_MB}", f"-max_len={MAX_LEN}", f"-artifact_prefix={found}/",
            "-print_final_stats=1", str(found), str(CORPUS / name)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    t0 = time.perf_counter()
    command = [sys.executable, "-m", "bench.fuzz.run", name, "--in-process", "--artifacts", str(found),
               "--", *args]
    # Through a shell that forks the harness: a process forked straight from a large one (pytest
    # after hundreds of tests) starts with the parent's peak RSS as its own (Linux keeps the peak
    # across fork and exec), which libFuzzer's -rss_limit_mb would read as a leak at the first input.
    proc = subprocess.Popen(["/bin/sh", "-c", 'exec "$@" & wait $!', "sh", *command], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        log, _ = proc.communicate(timeout=seconds + 300)
    finally:
        if proc.poll() is None or proc.returncode:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the harness too, not only its shell
    wall = time.perf_counter() - t0
    runs = re.findall(r"stat::number_of_executed_units:\s*(\d+)", log)
    cov = re.findall(r"cov: (\d+) ft: (\d+)", log)
    findings = sorted(p.name for p in found.iterdir() if re.match(r"(crash|timeout|oom|leak)-", p.name))
    return {"harness": name, "seconds": round(wall, 1), "exit_code": proc.returncode,
            "executions": int(runs[-1]) if runs else None,
            "coverage": int(cov[-1][0]) if cov else None, "features": int(cov[-1][1]) if cov else None,
            "seeds": len(list((CORPUS / name).iterdir())), "findings": findings,
            "log_tail": log[-3000:] if proc.returncode or findings else ""}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("harness", help="one of bench.fuzz.targets.TARGETS, or all")
    p.add_argument("--seconds", type=float, default=20, help="per harness")
    p.add_argument("--work", type=Path, help="found inputs and findings (default: a temporary folder)")
    p.add_argument("--json", type=Path, help="write the report here")
    p.add_argument("--reproduce", type=Path, help="run one input file through the harness and exit")
    p.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--artifacts", type=Path, default=Path("."), help=argparse.SUPPRESS)
    args, rest = p.parse_known_args(argv)
    if args.in_process:
        # (ssgan is not imported yet: the harness imports it instrumented)
        fuzz_in_this_process(args.harness, [a for a in rest if a != "--"], args.artifacts)
        return 0
    from bench.fuzz.targets import TARGETS

    if args.harness not in (*TARGETS, "all"):
        p.error(f"harness must be one of {', '.join(TARGETS)} or all, not {args.harness!r}")
    if args.reproduce:
        from bench.fuzz.targets import run_one

        run_one(args.harness, args.reproduce.read_bytes())
        print(f"{args.reproduce}: loads or raises {TARGETS[args.harness].error.__name__} (one line)")
        return 0
    names = list(TARGETS) if args.harness == "all" else [args.harness]
    work = args.work or Path(tempfile.mkdtemp(prefix="ssgan-fuzz-"))
    reports = []
    for name in names:
        r = fuzz(name, args.seconds, work)
        reports.append(r)
        print(f"{name:12s} {r['executions']} executions in {r['seconds']} s, coverage {r['coverage']}, "
              f"findings {r['findings'] or 'none'} (exit {r['exit_code']})", flush=True)
        if r["log_tail"]:
            print(r["log_tail"])
    if args.json:
        from bench.session import write_json

        write_json({"harnesses": reports, "work": str(work)}, args.json)
    return 0 if all(not r["findings"] and r["exit_code"] == 0 for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
