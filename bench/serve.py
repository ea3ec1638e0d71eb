"""``ssgan serve`` latency: p50/p95 per action over the HTTP API, and a bounded load test.

Usage (from the repository root)::

    python -m bench.serve [--json bench/results/serve-cpu.json] [--device cpu] [--models tiny,celeba-256]
    python -m bench.serve --quick --json /tmp/serve.json      # a few requests each: the plumbing only

Per model (random weights of the ``tiny`` preset and of ``celeba-256``: the cost does not depend
on them) the editor runs under uvicorn on 127.0.0.1 and one client times, end to end (request,
JSON with base64 PNGs, response): ``sample`` (a new random face), ``edit`` (resample one class's
texture), ``direction`` (one step of a direction-slider drag) and ``invert`` (upload → inversion of
``--invert-steps`` steps → state). The server's own time for a full render and for a render that
re-runs one local generator (the per-class cache) is reported too. Each model runs on both paths
(``--paths eager,compiled``: the engine's inductor-compiled renders, and the first-call times,
which include compiling or loading inductor's on-disk cache; whether that
cache was cold or warm at start is recorded, with the load average). Then, on the tiny model only,
``--clients`` clients (threads, one session each) send ``--requests`` edits each at once; the
errors and the latency percentiles are reported. Targets: CPU tiny-model edit p50 ≤ 100 ms
eager (issue 17), ≤ 30 ms compiled, celeba-256 ≤ 1.5 s compiled (issue 25).
GPU figures are not measured by this script's defaults (``--device cuda`` runs it there).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import io
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import torch
from PIL import Image

from bench.session import fmt, write_json
from bench.timing import environment
from ssgan.classes import ClassInfo, default_names
from ssgan.model.compiled import use_all_cores, use_inductor_cache
from ssgan.model.config import preset
from ssgan.model.generator import SemanticGenerator
from ssgan.serve.app import create_app
from ssgan.serve.editor import Limits
from ssgan.serve.engine import Engine, LocalCache

TARGETS_EDIT_MS = {("tiny", "eager"): 100.0,  # CPU p50 of an edit: issue 17
                   ("tiny", "compiled"): 30.0, ("celeba-256", "compiled"): 1500.0}  # issue 25


def targets(models: Sequence[dict]) -> list[dict]:
    """Each measured (model, path) that has an edit-latency target, with its p50 and met or not."""
    out = []
    for m in models:
        limit = TARGETS_EDIT_MS.get((m["preset"], m["path"]))
        if limit is not None:
            out.append({"preset": m["preset"], "path": m["path"], "edit_p50_ms_max": limit,
                        "measured_p50_ms": m["edit"]["p50_ms"], "met": m["edit"]["p50_ms"] <= limit})
    return out


def percentiles(ms: Sequence[float]) -> dict[str, float | int | None]:
    if not ms:
        return {"n": 0, "p50_ms": None, "p95_ms": None, "mean_ms": None, "max_ms": None}
    a = np.asarray(ms, float)
    return {"n": len(a), "p50_ms": round(float(np.percentile(a, 50)), 2),
            "p95_ms": round(float(np.percentile(a, 95)), 2), "mean_ms": round(float(a.mean()), 2),
            "max_ms": round(float(a.max()), 2)}


class Served:
    """An app under uvicorn on a free 127.0.0.1 port, in a thread (stopped by :meth:`stop`)."""

    def __init__(self, app):
        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                                    access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def timed(fn: Callable[[], httpx.Response]) -> float:
    t0 = time.perf_counter()
    r = fn()
    r.raise_for_status()
    return (time.perf_counter() - t0) * 1000


def png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def warm_up(engine: Engine, k: int) -> dict[str, float]:
    """The first full render and one-class cached render (on the compiled path these compile, or
    load from inductor's cache, the graphs) and the first inversion step (mean latent included), timed."""
    size = engine.cfg.size
    t0 = time.perf_counter()
    base = engine.sample(0)
    cache = LocalCache()
    engine.render(base, cache)
    engine.render(engine.replace(base, engine.sample(1), [k], "texture"), cache)
    t1 = time.perf_counter()
    engine.invert(torch.zeros(1, 3, size, size), 1)
    t2 = time.perf_counter()
    return {"render_s": round(t1 - t0, 2), "invert_s": round(t2 - t1, 2)}


def measure_model(name: str, device: str, repeats: int, invert_repeats: int, invert_steps: int,
                  warmup: int, compile: bool = False) -> tuple[dict, Engine]:
    cfg = preset(name)
    torch.manual_seed(0)
    G = SemanticGenerator(cfg).to(device)
    engine = Engine(G, ClassInfo(default_names(cfg.seg_dim)), compile=compile)
    k = min(3, cfg.seg_dim - 1)
    out: dict = {"preset": name, "path": "compiled" if compile else "eager", "size": cfg.size,
                 "classes": cfg.seg_dim, "repeats": repeats, "first_call": warm_up(engine, k)}
    served = Served(create_app(engine, Limits(invert_steps=invert_steps)))
    try:
        with httpx.Client(base_url=served.url, timeout=600) as c:
            sid = c.post("/api/session", json={}).json()["session"]
            actions: dict[str, Callable[[int], httpx.Response]] = {
                "sample": lambda i: c.post("/api/sample", json={"session": sid, "seed": 1000 + i}),
                "edit": lambda i: c.post("/api/edit", json={"session": sid, "op": "resample", "classes": [k],
                                                            "part": "texture", "seed": 2000 + i}),
                "direction": lambda i: c.post("/api/edit", json={
                    "session": sid, "op": "direction", "classes": [k], "part": "all", "direction": "pc1",
                    "strength": -3 + 6 * (i % 20) / 19}),
            }
            for action, call in actions.items():
                for i in range(warmup):
                    call(-1 - i).raise_for_status()
                out[action] = percentiles([timed(lambda: call(i)) for i in range(repeats)])  # noqa: B023
            photo = png_bytes(np.asarray(engine.pictures(engine.render(engine.sample(7)))["image"]))
            times = []
            for _ in range(invert_repeats):
                t0 = time.perf_counter()
                c.post(f"/api/invert?session={sid}&steps={invert_steps}&name=bench.png",
                       content=photo).raise_for_status()
                while c.get(f"/api/invert?session={sid}").json()["job"]["status"] == "running":
                    time.sleep(0.01)
                c.get(f"/api/state?session={sid}").raise_for_status()
                times.append((time.perf_counter() - t0) * 1000)
            per_step = round(float(np.median(times)) / invert_steps, 2) if times else None
            out["invert"] = {**percentiles(times), "steps": invert_steps, "ms_per_step": per_step}
    finally:
        served.stop()
    # the server's render alone: every local generator vs one re-run (the per-class cache)
    full, cached = [], []
    base = engine.sample(3)
    cache = LocalCache()
    engine.render(base, cache)
    for i in range(repeats):
        latent = engine.replace(base, engine.sample(50 + i), [k], "texture")
        full.append(timed_call(lambda: engine.render(latent), device))  # noqa: B023
        cached.append(timed_call(lambda: engine.render(latent, cache), device))  # noqa: B023
        engine.render(base, cache)
    out["render_full"] = percentiles(full)
    out["render_cached_one_class"] = percentiles(cached)
    return out, engine


def timed_call(fn: Callable[[], object], device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) * 1000


def load_test(device: str, clients: int, requests: int) -> dict:
    """``clients`` threads, one session each, ``requests`` edits each, all at once (tiny model)."""
    cfg = preset("tiny")
    torch.manual_seed(0)
    engine = Engine(SemanticGenerator(cfg).to(device), ClassInfo(default_names(cfg.seg_dim)))
    served = Served(create_app(engine, Limits(max_sessions=max(64, clients))))
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(j: int) -> None:
        with httpx.Client(base_url=served.url, timeout=120) as c:
            sid = c.post("/api/session", json={}).json()["session"]
            for i in range(requests):
                body = {"session": sid, "op": "resample", "classes": [1 + (i % (cfg.seg_dim - 1))],
                        "part": ("texture", "shape", "all")[i % 3], "seed": j * 10000 + i}
                t0 = time.perf_counter()
                try:
                    r = c.post("/api/edit", json=body)
                    ok = r.status_code == 200 and "image" in r.json()
                    why = f"{r.status_code}: {r.text[:100]}"
                except httpx.HTTPError as e:
                    ok, why = False, f"{type(e).__name__}: {e}"
                ms = (time.perf_counter() - t0) * 1000
                with lock:
                    latencies.append(ms)
                    if not ok:
                        errors.append(why)

    t0 = time.perf_counter()
    try:
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(client, range(clients)))
    finally:
        served.stop()
    wall = time.perf_counter() - t0
    return {"clients": clients, "requests_per_client": requests, "requests": len(latencies),
            "errors": len(errors), "error_examples": errors[:3], "wall_s": round(wall, 2),
            "requests_per_s": round(len(latencies) / wall, 1), **percentiles(latencies)}


def format_table(report: dict) -> str:
    lines = [f"device {report['device']}  commit {report['commit']}",
             f"{'model':11s} {'path':8s} {'action':24s} {'n':>4s} {'p50 ms':>9s} {'p95 ms':>9s}"]
    for m in report["models"]:
        for action in ("sample", "edit", "direction", "invert", "render_full", "render_cached_one_class"):
            r = m[action]
            label = action + (f" ({m['invert']['steps']} steps)" if action == "invert" else "")
            lines.append(f"{m['preset']:11s} {m['path']:8s} {label:24s} {r['n']:4d} "
                         f"{fmt(r['p50_ms'], '9.1f')} "
                         f"{fmt(r['p95_ms'], '9.1f')}")
        first = m["first_call"]
        lines.append(f"{m['preset']:11s} {m['path']:8s} first render {first['render_s']} s, first inversion "
                     f"step {first['invert_s']} s (the first render compiles on the compiled path)")
    if report.get("load"):
        ld = report["load"]
        lines.append(f"load: {ld['clients']} clients x {ld['requests_per_client']} edits (tiny): "
                     f"{ld['errors']} errors, p50 {fmt(ld['p50_ms'], '.1f')} ms, "
                     f"p95 {fmt(ld['p95_ms'], '.1f')} ms, "
                     f"{ld['requests_per_s']} requests/s")
    for t in report.get("targets", []):
        lines.append(f"target: {t['preset']} {t['path']} edit p50 <= {t['edit_p50_ms_max']:.0f} ms on CPU: "
                     f"{fmt(t['measured_p50_ms'], '.1f')} ms, {'met' if t['met'] else 'missed'}")
    return "\n".join(lines)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} x{os.cpu_count()}"
    except OSError:
        pass
    return f"unknown x{os.cpu_count()}"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.serve", description=__doc__.split("\n\n")[0])
    p.add_argument("--json", default="bench/results/serve-cpu.json", help="where the report goes")
    p.add_argument("--device", default="cpu")
    p.add_argument("--models", default="tiny,celeba-256")
    p.add_argument("--repeats", type=int, default=30, help="requests per action (celeba-256: a third)")
    p.add_argument("--invert-steps", type=int, default=20)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--requests", type=int, default=50)
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (default: the cores this process may use)")
    p.add_argument("--paths", default="eager,compiled",
                   help="eager and/or compiled (inductor; its cache: TORCHINDUCTOR_CACHE_DIR)")
    p.add_argument("--quick", action="store_true", help="3 requests per action, 2 clients x 3: plumbing only")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    else:
        use_all_cores()
    paths = [x for x in args.paths.split(",") if x]
    if not paths or set(paths) - {"eager", "compiled"}:
        p.error(f"--paths takes eager and/or compiled, not {args.paths!r}")
    cache = use_inductor_cache()
    cache_state = "warm" if cache.is_dir() and any(cache.iterdir()) else "cold"
    if args.quick:
        args.repeats, args.invert_steps, args.clients, args.requests = 3, 2, 2, 3
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    report: dict = {"benchmark": "serve", "date": now,
                    "device": args.device, "quick": args.quick, "threads": torch.get_num_threads(),
                    **{k: v for k, v in environment().items() if k in ("commit", "torch", "python")},
                    "cpu_model": _cpu_model(), "load_average": os.getloadavg(),
                    "inductor_cache": {"dir": str(cache), "at_start": cache_state},
                    "models": [], "gpu": "not measured"}
    for name in [m for m in args.models.split(",") if m]:
        big = name != "tiny"
        repeats = max(3, args.repeats // 3) if big else args.repeats
        steps = max(2, args.invert_steps // 4) if big else args.invert_steps
        for path in paths:
            result, _ = measure_model(name, args.device, repeats, 1 if big else 3, steps, 1 if big else 3,
                                      compile=path == "compiled")
            report["models"].append(result)
            print(f"{name} {path}: done, load {os.getloadavg()}", file=sys.stderr)
    report["load_average_end"] = os.getloadavg()
    if args.clients and args.requests:
        report["load"] = load_test(args.device, args.clients, args.requests)
    if args.device == "cpu":
        report["targets"] = targets(report["models"])
    path = write_json(report, Path(args.json))
    print(format_table(report))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
