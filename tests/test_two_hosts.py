"""Two hosts on one machine: torchrun across network namespaces (docs/reliability.md, "Two hosts").

:func:`two_hosts` makes two network namespaces joined by a veth pair (10.231.0.1/24 and
10.231.0.2/24) and deletes both, with the veth, whatever happens; only these namespaces are ever
a target. Each host runs one torchrun agent (``ip netns exec``) with one worker: ``--rdzv-backend
c10d`` at the first host's address (which holds the rendezvous store: ``is_host``), gloo on the
veth (``GLOO_SOCKET_IFNAME``), the run folder on the shared file system, world size 2:

* the 2-host run ends with the 1-host run's final checkpoint (every tensor, both ranks' RNGs);
* the second host SIGKILLed mid-run (agent and worker) and restarted by the test: with
  ``--max-restarts`` the group resumes from the newest checkpoint and ends bit-identical;
* the second host gone for good under ``--nnodes 1:2``: the first host continues alone from the
  newest checkpoint (a ``warning:`` line says what changed) and ends exactly as a 1-process run
  resumed from that checkpoint;
* the link cut (both ends of the veth down) for 40 s: the run ends (collective timeout ``SSGAN_DIST_TIMEOUT``,
  rendezvous timeouts set), by a restart from the newest checkpoint or a one-line error naming the
  timeout, and every checkpoint in the folder verifies.

The fast tests: the namespaces' clean-up after a failure, a resume at a smaller world size, and a
bad ``SSGAN_DIST_TIMEOUT``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from ssgan.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint, verify_checkpoint
from ssgan.distributed import DEFAULT_TIMEOUT_S, dist_timeout
from ssgan.train import loop as train
from ssgan.train.spec import RunSpec
from ssgan.train.state import world_change_warning

ROOT = Path(__file__).resolve().parents[1]
STEPS = 8
FLAGS = ["--batch", "4", "--steps", str(STEPS), "--ckpt-every", "2", "--keep", "0", "--log-every", "1",
         "--sample-every", "100", "--metrics", "none", "--device", "cpu", "--threads", "1", "--length", "16"]
PORT = 29400  # the rendezvous port on the first host (each namespace has its own ports)
WAIT = 420  # seconds: the longest any run of this file may take
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
# every agent: the workers' store is their own, not the agent's (a host whose agent restarts cannot
# rejoin a group whose rank-0 agent shares its store: pytorch/pytorch#135712; docs/reliability.md)
HOST_ENV = {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}


# ----- the hosts ------------------------------------------------------------------------------------
def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20, check=check)


def namespaces_unavailable() -> str | None:
    """Why this machine cannot make network namespaces, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    if _ip("netns", "list", check=False).returncode != 0:
        return "`ip netns` is unavailable"
    return None


@dataclass(frozen=True)
class Host:
    """One namespace: its name, its end of the veth pair and its address."""

    ns: str
    veth: str
    addr: str

    def run(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.ns, *args], capture_output=True, text=True,
                              timeout=60, **kwargs)


@contextmanager
def two_hosts() -> Iterator[tuple[Host, Host]]:
    """Two namespaces joined by a veth pair, 10.231.0.1/24 and 10.231.0.2/24; both namespaces and
    the veth are deleted on the way out, also after a failure."""
    tag = os.getpid() % 100000
    hosts = (Host(f"ssgan{tag}a", f"sgv{tag}a", "10.231.0.1"),
             Host(f"ssgan{tag}b", f"sgv{tag}b", "10.231.0.2"))
    try:
        _ip("link", "add", hosts[0].veth, "type", "veth", "peer", "name", hosts[1].veth)
        for h in hosts:
            _ip("netns", "add", h.ns)
            _ip("link", "set", h.veth, "netns", h.ns)
            _ip("-n", h.ns, "addr", "add", f"{h.addr}/24", "dev", h.veth)
            _ip("-n", h.ns, "link", "set", h.veth, "up")
            _ip("-n", h.ns, "link", "set", "lo", "up")
        yield hosts
    finally:
        for h in hosts:
            _ip("netns", "delete", h.ns, check=False)  # deletes the veth inside it too
            _ip("link", "delete", h.veth, check=False)  # one not yet moved into its namespace


STARTED: list[subprocess.Popen] = []  # every agent a test started: none outlives its test


@pytest.fixture
def hosts() -> Iterator[tuple[Host, Host]]:
    reason = namespaces_unavailable()
    if reason:
        pytest.skip(reason)
    with two_hosts() as pair:
        try:
            yield pair
        finally:
            while STARTED:
                proc = STARTED.pop()
                if proc.poll() is None:
                    kill_host(proc)


def _descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (torchrun starts its workers in sessions of their own)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(parents.get(p, []))
    return out


def kill_host(proc: subprocess.Popen) -> int:
    """SIGKILL a host's agent and its workers; the number of processes killed."""
    victims = _descendants(proc.pid)
    for p in victims:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=30)
    return len(victims)


def agent(host: Host, first: Host, out: Path, log: Path, *, nnodes: str = "2", restarts: int = 0,
          rdzv: str = "", env: dict[str, str] | None = None) -> subprocess.Popen:
    """One torchrun agent with one worker on ``host``; the rendezvous at ``first``'s address."""
    conf = f"is_host={str(host == first).lower()}" + (f",{rdzv}" if rdzv else "")
    cmd = ["ip", "netns", "exec", host.ns, sys.executable, "-m", "torch.distributed.run", "--nnodes", nnodes,
           "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint", f"{first.addr}:{PORT}",
           "--rdzv-id", "ssgan-hosts", "--rdzv-conf", conf, "--local-addr", host.addr,
           "--max-restarts", str(restarts), "--monitor-interval", "0.5", str(ROOT / "train.py"), *FLAGS,
           "--outdir", str(out)]
    with log.open("a") as f:
        proc = subprocess.Popen(cmd, cwd=ROOT, env={**ENV, **HOST_ENV, "GLOO_SOCKET_IFNAME": host.veth,
                                                    **(env or {})},
                                stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    STARTED.append(proc)
    return proc


def finish(*procs: subprocess.Popen, timeout: float = WAIT) -> list[int]:
    """Every agent's exit status; those still running after ``timeout`` seconds are killed (and
    fail the test: a run must never hang)."""
    deadline, codes = time.monotonic() + timeout, []
    for p in procs:
        try:
            codes.append(p.wait(timeout=max(1.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            for q in procs:
                if q.poll() is None:
                    kill_host(q)
            pytest.fail(f"a torchrun agent still ran after {timeout} s")
    return codes


def wait_for_step(out: Path, step: int, procs: list[subprocess.Popen], logs: list[Path]) -> None:
    """Until stats.jsonl holds ``step`` records (bounded)."""
    stats, deadline = out / "stats.jsonl", time.monotonic() + WAIT
    while not (stats.exists() and stats.read_text().count("\n") >= step):
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            finish(*procs, timeout=5)
            pytest.fail(f"the run did not reach step {step}:\n{_tails(logs)}")
        time.sleep(0.1)


def _tails(logs: list[Path]) -> str:
    return "\n".join(f"== {p}\n{p.read_text()[-3000:]}" for p in logs if p.exists())


def tensor_bytes(path: Path) -> dict[str, bytes]:
    """Every tensor of a checkpoint (weights, optimisers, every rank's RNG states) as bytes."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k).reshape(-1).view(torch.uint8).numpy().tobytes() for k in f.keys()}


def assert_same(a: Path, b: Path) -> int:
    """``a`` and ``b`` hold the same tensors, bit for bit; their number."""
    x, y = tensor_bytes(a), tensor_bytes(b)
    assert x.keys() == y.keys()
    assert [k for k in x if x[k] != y[k]] == []
    return len(x)


def assert_all_verify(out: Path) -> list[Path]:
    """Every checkpoint in the run folder verifies and no temporary file is left."""
    found = list_checkpoints(out / "checkpoints")
    for path in found:
        verify_checkpoint(path, cache=False)
    assert [p.name for p in (out / "checkpoints").iterdir() if p.name.startswith(".")] == []
    return found


def final(out: Path) -> Path:
    return out / "checkpoints" / f"{STEPS:07d}.safetensors"


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run at world size 2 on one host (torchrun --standalone): its run folder."""
    out = tmp_path_factory.mktemp("one_host") / "run"
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                          "2", str(ROOT / "train.py"), *FLAGS, "--outdir", str(out)], cwd=ROOT, env=ENV,
                         capture_output=True, text=True, timeout=WAIT)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return out


# ----- fast ---------------------------------------------------------------------------------------
def test_namespaces_are_deleted_after_a_failure():
    reason = namespaces_unavailable()
    if reason:
        pytest.skip(reason)
    with pytest.raises(RuntimeError, match="inside"), two_hosts() as (a, b):
        assert f"{a.addr}/24" in _ip("-n", a.ns, "addr", "show", a.veth).stdout
        assert f"{b.addr}/24" in _ip("-n", b.ns, "addr", "show", b.veth).stdout
        raise RuntimeError("a failure inside")
    assert not {a.ns, b.ns} & set(_ip("netns", "list").stdout.split())
    assert _ip("link", "show", a.veth, check=False).returncode != 0
    assert _ip("link", "show", b.veth, check=False).returncode != 0


@pytest.mark.slow
def test_resume_at_a_smaller_world_size(tmp_path, capsys):
    """A checkpoint of 2 ranks resumed by 1 process: a warning names what changes, the run
    continues from the checkpoint's step and ends the same way each time (reseeded RNGs)."""
    base = ["--batch", "4", "--ckpt-every", "2", "--log-every", "10", "--sample-every", "100", "--metrics",
            "none", "--device", "cpu", "--threads", "1", "--length", "8"]
    one = tmp_path / "one"
    assert train.main([*base, "--steps", "2", "--outdir", str(one)]) == 0
    ck = load_checkpoint(one / "checkpoints" / "0000002.safetensors")
    rank1 = {"rank1." + k[len("rank0."):]: v for k, v in ck.tensors.items() if k.startswith("rank0.")}
    two_ranks = {**ck.tensors, **rank1}
    ends = []
    for name in ("a", "b"):
        out = tmp_path / name
        save_checkpoint(out / "checkpoints" / "0000002.safetensors", ck.config, g_ema=ck.g_ema, g=ck.g,
                        d=ck.d, g_optim=ck.g_optim_state, d_optim=ck.d_optim_state, step=2, tensors=two_ranks,
                        meta={**ck.meta, "world_size": 2})
        capsys.readouterr()
        assert train.main([*base, "--steps", "3", "--outdir", str(out)]) == 0
        captured = capsys.readouterr()
        warning = [line for line in captured.err.splitlines() if line.startswith("warning:")]
        assert len(warning) == 1, captured.err
        assert "world size 2 -> 1, per-rank batch 2 -> 4, data order unchanged" in warning[0]
        assert "resuming from" in captured.out and "at step 2" in captured.out
        end = load_checkpoint(out / "checkpoints" / "0000003.safetensors")
        assert end.step == 3 and end.meta["world_size"] == 1 and "rank1.rng.torch_cpu" not in end.tensors
        ends.append(out / "checkpoints" / "0000003.safetensors")
    assert_same(*ends)
    spec = RunSpec.from_args(["--batch", "8", "--outdir", str(tmp_path / "c")], world_size=2)
    text = world_change_warning(Path("x.safetensors"), {"args": {"batch": 4}}, spec, 1)
    assert "world size 1 -> 2, per-rank batch 4 -> 4, data order changed (global batch 4 -> 8)" in text


def test_a_bad_collective_timeout_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")  # checked before any process group is set up
    for value in ("abc", "0", "-5"):
        monkeypatch.setenv("SSGAN_DIST_TIMEOUT", value)
        assert train.main(["--device", "cpu", "--outdir", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and err.startswith("ssgan: error: SSGAN_DIST_TIMEOUT=")
        assert "is not a positive number of seconds" in err
    monkeypatch.setenv("SSGAN_DIST_TIMEOUT", "12.5")
    assert dist_timeout().total_seconds() == 12.5
    monkeypatch.delenv("SSGAN_DIST_TIMEOUT")
    assert dist_timeout().total_seconds() == DEFAULT_TIMEOUT_S


# ----- slow: torchrun on two hosts ----------------------------------------------------------------
@pytest.mark.slow
def test_two_hosts_end_as_one_host(hosts, reference, tmp_path):
    a, b = hosts
    out, logs = tmp_path / "run", [tmp_path / "a.log", tmp_path / "b.log"]
    start = time.monotonic()
    procs = [agent(a, a, out, logs[0]), agent(b, a, out, logs[1])]
    assert finish(*procs) == [0, 0], _tails(logs)
    n = assert_same(final(reference), final(out))
    assert n > 1000 and any(k.endswith("rank1.rng.torch_cpu") for k in tensor_bytes(final(out)))
    assert "on cpu x2" in "".join(p.read_text() for p in logs)
    print(f"two hosts: {n} tensors equal, {time.monotonic() - start:.0f} s")


@pytest.mark.slow
def test_a_killed_host_restarted_ends_bit_exact(hosts, reference, tmp_path):
    a, b = hosts
    out, logs = tmp_path / "run", [tmp_path / "a.log", tmp_path / "b.log"]
    start = time.monotonic()
    procs = [agent(a, a, out, logs[0], restarts=3), agent(b, a, out, logs[1], restarts=3)]
    wait_for_step(out, 3, procs, logs)
    killed = kill_host(procs[1])
    procs[1] = agent(b, a, out, logs[1], restarts=3)  # the host comes back
    assert finish(*procs) == [0, 0], _tails(logs)
    text = "".join(p.read_text() for p in logs)
    resumed = re.findall(r"resuming from \S+ at step (\d+)", text)
    assert resumed and int(resumed[-1]) >= 2, text[-3000:]
    n = assert_same(final(reference), final(out))
    assert_all_verify(out)
    print(f"killed host: {killed} processes, resumed at step {resumed[-1]}, {n} tensors equal, "
          f"{time.monotonic() - start:.0f} s")


@pytest.mark.slow
def test_a_host_gone_for_good_the_other_continues(hosts, reference, tmp_path):
    a, b = hosts
    out, logs = tmp_path / "run", [tmp_path / "a.log", tmp_path / "b.log"]
    start = time.monotonic()
    conf = "last_call_timeout=5,join_timeout=120"
    procs = [agent(h, a, out, log, nnodes="1:2", restarts=3, rdzv=conf) for h, log in zip(hosts, logs)]
    wait_for_step(out, 3, procs, logs)
    killed = kill_host(procs[1])
    assert finish(procs[0]) == [0], _tails(logs)
    text = logs[0].read_text()
    resumed = re.findall(r"resuming from (\S+) at step (\d+)", text)
    assert resumed, text[-3000:]
    warning = [line for line in text.splitlines() if line.startswith("warning:") and "world size" in line]
    assert len(warning) == 1, text[-3000:]
    assert "world size 2 -> 1, per-rank batch 2 -> 4, data order unchanged" in warning[0]
    end = load_checkpoint(final(out))
    assert end.meta["world_size"] == 1
    assert_all_verify(out)
    # the continuation is a 1-process resume from that checkpoint, exactly
    step = int(resumed[-1][1])
    again = tmp_path / "again"
    (again / "checkpoints").mkdir(parents=True)
    name = f"{step:07d}.safetensors"
    shutil.copy(reference / "checkpoints" / name, again / "checkpoints")
    assert_same(out / "checkpoints" / name, again / "checkpoints" / name)
    res = subprocess.run([sys.executable, str(ROOT / "train.py"), *FLAGS, "--outdir", str(again)], cwd=ROOT,
                         env=ENV, capture_output=True, text=True, timeout=WAIT)
    assert res.returncode == 0, res.stderr[-3000:]
    n = assert_same(final(again), final(out))
    print(f"host gone: {killed} processes killed, continued alone from step {step}, {n} tensors equal to a "
          f"1-process resume, {time.monotonic() - start:.0f} s")


CUT = 40  # seconds the link is down


@pytest.mark.slow
def test_a_cut_link_ends_in_a_restart_or_a_timeout_error(hosts, reference, tmp_path):
    a, b = hosts
    out, logs = tmp_path / "run", [tmp_path / "a.log", tmp_path / "b.log"]
    start = time.monotonic()
    env = {"SSGAN_DIST_TIMEOUT": "10"}
    conf = "join_timeout=120,read_timeout=60,last_call_timeout=10,close_timeout=10"
    procs = [agent(h, a, out, log, restarts=3, rdzv=conf, env=env) for h, log in zip(hosts, logs)]
    wait_for_step(out, 3, procs, logs)
    # the cut: both ends down (tc netem would drop packets instead, but this kernel has no sch_netem)
    for h in hosts:
        _ip("-n", h.ns, "link", "set", h.veth, "down")
    try:
        time.sleep(CUT)
    finally:
        for h in hosts:
            _ip("-n", h.ns, "link", "set", h.veth, "up")
    codes = finish(*procs)
    text = "".join(p.read_text() for p in logs)
    found = assert_all_verify(out)
    timeout_errors = [line for line in text.splitlines()
                      if line.startswith("ssgan: error:") and "SSGAN_DIST_TIMEOUT=10 s" in line]
    if codes == [0, 0]:  # a restart from the newest checkpoint: the run ends as the uninterrupted one
        assert "resuming from" in text, text[-3000:]
        assert_same(final(reference), final(out))
        outcome = "restarted from the newest checkpoint and ended bit-exact"
    else:
        assert timeout_errors, text[-3000:]
        outcome = f"stopped (exit {codes}) with: {timeout_errors[0]}"
    print(f"link cut {CUT} s: {outcome}; {len(timeout_errors)} timeout lines; {len(found)} checkpoints "
          f"verify; {time.monotonic() - start:.0f} s")
