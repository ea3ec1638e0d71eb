"""A bounded soak of ``ssgan serve``: clients editing, uploading and churning sessions for a fixed
time against a live server on 127.0.0.1, with the server's memory, descriptors and latency tracked.

Usage (from the repository root)::

    python -m bench.soak --clients 8 --seconds 300 --json bench/results/soak-cpu.json   # the full run
    python -m bench.soak --clients 4 --seconds 45                                       # a short one

Each client (a thread, its own keep-alive connection) loops until the deadline over: an edit
(resample one class), a sample, an undo, a latent download and re-upload (``/api/latent``), an
image upload inverted in 2 steps (``/api/invert``, polled until done) and, every
:data:`CHURN_EVERY` actions, a new session (``/api/session``) — so the server meets far more
sessions than it keeps (64): the least recently used are evicted. A client then asks for the
state of the oldest session it left once 64 sessions were made after it (by any client): that must
be a 404 naming the session as unknown or expired (what the page turns into a new session,
``static/app.js``), counted as ``evicted_404``; any other answer (a 200 there too), or a transport
error, is an error.

Every second the server's resident memory (``/proc/PID/status`` VmRSS) and open descriptors
(``/proc/PID/fd``) are sampled. Reported: requests, errors, sessions made, the least-squares
slopes of RSS (MB/min) and descriptors (per min) over the second half of the run (after warm-up),
the RSS at each whole minute, the p50/p95 latency of the first and the last fifth of the run, the
p95 of each minute and the machine's load average (other jobs share it) at each minute.
"""

from __future__ import annotations

import argparse
import io
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from bench.live import LiveServer

CHURN_EVERY = 3  # actions per session before a client starts a new one
SESSION_CAP = 64  # Limits.max_sessions: sessions the server keeps
MAX_REQUEST_S = 60.0  # a request taking longer is an error (and ends the client's wait)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def slope_per_min(t: Sequence[float], y: Sequence[float]) -> float | None:
    """Least-squares slope of y over t (seconds), per minute, over the second half of the samples."""
    half = len(t) // 2
    if len(t) - half < 3:
        return None
    tt, yy = np.asarray(t[half:], float), np.asarray(y[half:], float)
    return round(float(np.polyfit(tt, yy, 1)[0]) * 60, 3)


def pct(ms: Sequence[float]) -> dict[str, float | int | None]:
    a = np.asarray(ms, float)
    if not len(a):
        return {"n": 0, "p50_ms": None, "p95_ms": None}
    return {"n": len(a), "p50_ms": round(float(np.percentile(a, 50)), 1),
            "p95_ms": round(float(np.percentile(a, 95)), 1)}


def photo_png(seed: int) -> bytes:
    rgb = np.random.default_rng(seed).integers(0, 255, (32, 32, 3), np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


class Counter:
    """Sessions made by all clients (a thread-safe count)."""

    def __init__(self) -> None:
        self.n, self.lock = 0, threading.Lock()

    def next(self) -> int:
        with self.lock:
            self.n += 1
            return self.n


class Client:
    """One soak client: its loop, latencies (start time, ms) and outcome counts."""

    def __init__(self, url: str, index: int, deadline: float, t0: float, made: Counter):
        self.made = made
        self.url, self.index, self.deadline, self.t0 = url, index, deadline, t0
        self.latencies: list[tuple[float, float]] = []
        self.errors: list[str] = []
        self.evicted_404 = 0
        self.sessions = 0
        self.requests = 0

    def call(self, http: httpx.Client, method: str, path: str, ok: tuple[int, ...] = (200,),
             **kw: object) -> httpx.Response | None:
        start = time.perf_counter()
        try:
            r = http.request(method, path, timeout=MAX_REQUEST_S, **kw)  # type: ignore[arg-type]
        except httpx.HTTPError as e:
            self.errors.append(f"{method} {path}: {type(e).__name__}: {e}")
            return None
        self.requests += 1
        self.latencies.append((start - self.t0, (time.perf_counter() - start) * 1000))
        if r.status_code not in ok:
            self.errors.append(f"{method} {path}: {r.status_code} {r.text[:200]}")
            return None
        return r

    def new_session(self, http: httpx.Client) -> str | None:
        r = self.call(http, "POST", "/api/session", json={})
        self.sessions += 1
        self.serial = self.made.next()
        return None if r is None else r.json()["session"]

    def run(self) -> None:
        old: list[tuple[str, int]] = []  # the sessions this client left, their serials; oldest first
        with httpx.Client(base_url=self.url) as http:
            sid = self.new_session(http)
            i = 0
            while time.monotonic() < self.deadline and sid is not None:
                i += 1
                step = i % 6
                if step == 0:
                    self.call(http, "POST", "/api/edit", json={"session": sid, "op": "resample",
                                                               "classes": [1 + i % 4], "part": "texture"})
                elif step == 1:
                    self.call(http, "POST", "/api/sample", json={"session": sid, "seed": i})
                elif step == 2:
                    self.call(http, "POST", "/api/undo", json={"session": sid}, ok=(200, 400))
                elif step == 3:
                    r = self.call(http, "GET", f"/api/download/latent.npy?session={sid}")
                    if r is not None:
                        self.call(http, "POST", f"/api/latent?session={sid}&name=soak.npy", content=r.content)
                elif step == 4:
                    self.invert(http, sid, i)
                if i % CHURN_EVERY == 0:
                    old.append((sid, self.serial))
                    sid = self.new_session(http)
                    if old and self.made.n - old[0][1] > SESSION_CAP:  # 64 newer sessions: evicted
                        r = self.call(http, "GET", f"/api/state?session={old.pop(0)[0]}", ok=(404,))
                        if r is not None and "unknown or expired session" in r.json()["error"]:
                            self.evicted_404 += 1

    def invert(self, http: httpx.Client, sid: str, i: int) -> None:
        r = self.call(http, "POST", f"/api/invert?session={sid}&steps=2&name=soak{i}.png",
                      content=photo_png(i), ok=(200, 409))
        end = time.monotonic() + MAX_REQUEST_S
        while r is not None and r.status_code == 200 and time.monotonic() < end:
            job = self.call(http, "GET", f"/api/invert?session={sid}")
            if job is None or job.json()["job"]["status"] != "running":
                return
            time.sleep(0.05)


def soak(clients: int, seconds: float, sample_s: float = 1.0) -> dict:
    """Run ``clients`` clients for ``seconds`` against a fresh ``ssgan serve`` of the tiny model."""
    with LiveServer(["--invert-steps", "2"]) as server:
        t0 = time.monotonic()
        deadline = t0 + seconds
        made = Counter()
        workers = [Client(server.url, j, deadline, time.perf_counter(), made) for j in range(clients)]
        threads = [threading.Thread(target=w.run, daemon=True) for w in workers]
        for th in threads:
            th.start()
        samples: list[tuple[float, float, int]] = []
        load: list[float] = []  # the machine's 1-minute load average at each whole minute
        while any(th.is_alive() for th in threads) and time.monotonic() < deadline + 2 * MAX_REQUEST_S:
            samples.append((time.monotonic() - t0, rss_mb(server.pid), fds(server.pid)))
            if len(samples) % int(60 / sample_s) == 1:
                load.append(round(os.getloadavg()[0], 1))
            time.sleep(sample_s)
        for th in threads:
            th.join(1)
        alive = server.alive() and httpx.get(f"{server.url}/api/info", timeout=30).status_code == 200
        log = server.stop()
    wall = time.monotonic() - t0
    lat = sorted(x for w in workers for x in w.latencies)
    fifth = seconds / 5
    t, rss, fd = zip(*samples) if samples else ((), (), ())
    errors = [e for w in workers for e in w.errors]
    return {
        "clients": clients, "seconds": round(wall, 1), "requests": sum(w.requests for w in workers),
        "requests_per_s": round(sum(w.requests for w in workers) / wall, 1),
        "sessions_created": sum(w.sessions for w in workers), "session_cap": SESSION_CAP,
        "evicted_404": sum(w.evicted_404 for w in workers), "errors": len(errors),
        "error_examples": errors[:5],
        "server_alive": alive, "server_tracebacks": log.count("Traceback"),
        "rss_mb": {"start": round(rss[0], 1) if rss else None, "end": round(rss[-1], 1) if rss else None,
                   "max": round(max(rss), 1) if rss else None, "slope_mb_per_min": slope_per_min(t, rss)},
        "rss_mb_each_minute": [round(r, 1) for s_, r in zip(t, rss) if s_ % 60 < sample_s] + [
            round(rss[-1], 1)] if rss else [],
        "fds": {"start": fd[0] if fd else None, "end": fd[-1] if fd else None, "max": max(fd) if fd else None,
                "slope_per_min": slope_per_min(t, fd)},
        "latency_first_fifth": pct([ms for s, ms in lat if s < fifth]),
        "latency_last_fifth": pct([ms for s, ms in lat if s >= seconds - fifth]),
        "latency_all": pct([ms for _, ms in lat]),
        "p95_ms_each_minute": [pct([ms for s, ms in lat if m * 60 <= s < (m + 1) * 60])["p95_ms"]
                               for m in range(max(1, round(seconds / 60)))],
        "load_average_each_minute": load,
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=300)
    p.add_argument("--json", type=Path, help="write the report here")
    args = p.parse_args(argv)
    report = soak(args.clients, args.seconds)
    if args.json:
        from bench.session import write_json
        from bench.timing import environment

        write_json({**report, "environment": environment()}, args.json)
    import json

    print(json.dumps(report, indent=1))
    return 0 if report["errors"] == 0 and report["server_alive"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
