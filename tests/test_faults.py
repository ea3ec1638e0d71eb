"""Faults: checkpoints survive kills, corruption, full disks and unwritable folders.

* a training run killed with SIGKILL at random moments (some inside a checkpoint write) and
  restarted with ``--resume`` until it finishes ends with the same G-EMA, bit for bit, as an
  uninterrupted run (``slow``);
* a truncated or byte-flipped newest checkpoint is skipped with a warning naming it, the previous
  one is resumed from, and the result is still identical;
* every checkpoint is read back and checked against its stored sha256 before it replaces anything,
  ``latest`` moves, or rotation deletes an older one; a full disk / unwritable folder is one line
  naming the path, the space needed and free, with the previous checkpoint intact;
* ``best-<metric>`` carries the run's metadata (classes, configuration, arguments), and ``latest``
  names the newest verified step checkpoint (symlink; hard link or latest.txt where links fail).
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from ssgan import checkpoint as C
from ssgan.checkpoint import (
    CheckpointError,
    atomic_write,
    inspect_checkpoint,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    remove_stale_temps,
    resolve_checkpoint,
    save_checkpoint,
    temp_path,
    verify_checkpoint,
)
from ssgan.cli import main as cli
from ssgan.model.config import preset
from ssgan.train import loop as train
from ssgan.train import rundir
from ssgan.train.spec import RunSpec

ROOT = Path(__file__).resolve().parents[1]
CFG = preset("tiny")
STEPS = 12
FLAGS = ["--batch", "4", "--ckpt-every", "2", "--log-every", "1", "--sample-every", "100",
         "--metrics", "none", "--device", "cpu", "--threads", "1"]
RUN = [sys.executable, str(ROOT / "train.py"), *FLAGS]
TRIALS = 10  # kill-and-resume trials in test_random_kills_resume_bit_exact
PAUSE = 0.3  # seconds each checkpoint write sleeps in the kill trials (PAUSED_TRAIN)
# ``python -c PAUSED_TRAIN <train.py flags>``: train.py with every checkpoint write paused PAUSE
# seconds twice, so that a kill can land inside one: before the save's read-back (the temporary
# file is written, not yet renamed) and before it records the renamed file as verified. The
# package has no hook for this: the script wraps the functions that ssgan.checkpoint.atomic_write
# calls at those two points.
PAUSED_TRAIN = f"""
import runpy, sys, time
from ssgan.checkpoint import atomic_write


def paused(function):
    def run(*args, **kwargs):
        time.sleep({PAUSE})
        return function(*args, **kwargs)
    return run


atomic_write.verify_checkpoint = paused(atomic_write.verify_checkpoint)
atomic_write.remember_verified = paused(atomic_write.remember_verified)
sys.argv[0] = {str(ROOT / "train.py")!r}
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")


def _launch(out: Path, log: Path) -> subprocess.Popen:
    """``train.py --resume`` in a subprocess, every checkpoint write paused (:data:`PAUSED_TRAIN`),
    its output appended to ``log``."""
    with open(log, "a") as f:
        return subprocess.Popen([sys.executable, "-c", PAUSED_TRAIN, *FLAGS, "--steps", str(STEPS),
                                 "--outdir", str(out), "--resume"], cwd=ROOT, env=_env(), stdout=f,
                                stderr=subprocess.STDOUT)


def _finish(out: Path, steps: int = STEPS) -> subprocess.CompletedProcess:
    proc = subprocess.run([*RUN, "--steps", str(steps), "--outdir", str(out), "--resume"], cwd=ROOT,
                          env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def tensor_bytes(path: Path, prefix: str = "") -> dict[str, bytes]:
    """The raw bytes of every tensor whose name starts with ``prefix`` (bit-for-bit comparison,
    NaN and -0.0 included)."""
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k).reshape(-1).view(torch.uint8).numpy().tobytes()
                for k in f.keys() if k.startswith(prefix)}


def g_ema_bytes(path: Path) -> dict[str, bytes]:
    return tensor_bytes(path, "g_ema.")


def _temps(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if C.is_temp(p)] if folder.is_dir() else []


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[dict[str, bytes], float]:
    """The uninterrupted run (once per session): its final G-EMA and wall time."""
    out = tmp_path_factory.mktemp("reference") / "run"
    t0 = time.perf_counter()
    _finish(out)
    return g_ema_bytes(out / "checkpoints" / f"{STEPS:07d}.safetensors"), time.perf_counter() - t0


def _assert_final(out: Path, reference: tuple[dict[str, bytes], float]) -> None:
    ckpts = out / "checkpoints"
    final = ckpts / f"{STEPS:07d}.safetensors"
    assert g_ema_bytes(final) == reference[0], f"{final}: G-EMA differs from the uninterrupted run"
    assert (ckpts / "latest.safetensors").resolve() == final.resolve()
    assert not _temps(ckpts), f"temporary files left: {_temps(ckpts)}"
    # --keep 3; a kill between the last save's rename and its rotation leaves older ones, all valid
    kept = list_checkpoints(ckpts)
    assert [p.name for p in kept][-3:] == [f"{s:07d}.safetensors" for s in (8, 10, 12)]
    for p in kept:
        verify_checkpoint(p, cache=False)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _flip_byte(path: Path, where: float = 0.6) -> None:
    data = bytearray(path.read_bytes())
    n = struct.unpack("<Q", data[:8])[0]
    i = 8 + n + int((len(data) - 8 - n) * where)
    data[i] ^= 0x40
    path.write_bytes(bytes(data))


# ----- kills -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_random_kills_resume_bit_exact(tmp_path, reference):
    """TRIALS runs, each killed (SIGKILL) once or twice and resumed until it finishes. A third
    of the kills wait for a checkpoint write to be under way (its temporary file exists; every write
    pauses PAUSE s inside, before and after the rename), the others land at a random time after the
    launch. Every run must end with the reference G-EMA, ``latest`` on the last step, no temp file."""
    rng = random.Random(18)
    wall = reference[1]
    kills = write_kills = in_write = temp_left = 0
    for trial in range(TRIALS):
        out = tmp_path / f"trial{trial}"
        ckpts = out / "checkpoints"
        for k in range(rng.randint(1, 2)):
            during_write = (trial + k) % 3 == 0
            # in a write: before the rename (temp file there) or in the pause after it
            delay = rng.uniform(0.0, 2 * PAUSE) if during_write else rng.uniform(1.0, wall + 2 * PAUSE * 6)
            proc = _launch(out, tmp_path / f"trial{trial}.log")
            t0 = time.perf_counter()
            if during_write:
                while proc.poll() is None and not _temps(ckpts) and time.perf_counter() - t0 < 120:
                    time.sleep(0.005)
            time.sleep(delay)
            if proc.poll() is not None:  # finished before the kill
                assert proc.wait() == 0, (tmp_path / f"trial{trial}.log").read_text()[-2000:]
                continue
            temps_before = {p.name for p in _temps(ckpts)}
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            write_kills += during_write
            in_write += bool(temps_before)
            temp_left += bool(_temps(ckpts))
        _finish(out)
        _assert_final(out, reference)
    print(f"\n{TRIALS} runs, {kills} kills ({write_kills} aimed at a checkpoint write, {in_write} with a "
          f"temporary file on disk, {temp_left} leaving one behind): {TRIALS}/{TRIALS} resumed, final "
          f"G-EMA identical")
    assert kills >= TRIALS and in_write >= TRIALS // 3


@pytest.mark.slow
def test_corrupt_newest_checkpoints_are_skipped(tmp_path, reference):
    """Newest checkpoint truncated, the one before it with a flipped byte, a leftover temp file of a
    killed write: the resume warns naming both, uses the third, cleans the temp file, and ends with
    the reference G-EMA."""
    out = tmp_path / "run"
    ckpts = out / "checkpoints"
    _finish(out, steps=8)
    assert [p.name for p in list_checkpoints(ckpts)] == ["0000004.safetensors", "0000006.safetensors",
                                                         "0000008.safetensors"]
    eight, six = ckpts / "0000008.safetensors", ckpts / "0000006.safetensors"
    eight.write_bytes(eight.read_bytes()[: eight.stat().st_size * 2 // 3])
    _flip_byte(six)
    leftover = ckpts / f".0000010.safetensors.{C.temp_path(eight).name.split('.')[3]}.{_dead_pid()}.ab12.tmp"
    leftover.write_bytes(b"half a checkpoint")
    assert C.is_temp(leftover)
    done = _finish(out)
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert any(str(eight) in w and "truncated" in w for w in warnings), done.stderr[-2000:]
    assert any(str(six) in w and "sha256" in w for w in warnings), done.stderr[-2000:]
    assert f"resuming from {ckpts / '0000004.safetensors'} at step 4" in done.stdout
    assert not leftover.exists()
    _assert_final(out, reference)


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _rank_of(pid: int) -> int | None:
    try:
        env = (Path("/proc") / str(pid) / "environ").read_bytes().split(b"\0")
    except OSError:
        return None
    return next((int(e[5:]) for e in env if e.startswith(b"RANK=")), None)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the workers through /proc")
def test_torchrun_restarts_a_killed_worker_and_ends_bit_exact(tmp_path):
    """torchrun --max-restarts: a worker killed with SIGKILL mid-run; the restarted group continues
    from the newest checkpoint (--resume auto) and the last checkpoint is the uninterrupted run's,
    every tensor (weights, both ranks' RNG states) bit for bit (CPU, gloo)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    flags = ["--batch", "4", "--steps", "8", "--ckpt-every", "2", "--log-every", "1", "--metrics", "none",
             "--device", "cpu", "--length", "16"]

    def torchrun(out: Path) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone",
                                 "--nproc_per_node=2", "--max-restarts", "3", str(ROOT / "train.py"), *flags,
                                 "--outdir", str(out)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    straight = torchrun(tmp_path / "straight")
    log, _ = straight.communicate(timeout=600)
    assert straight.returncode == 0, log[-3000:]

    out = tmp_path / "killed"
    proc = torchrun(out)
    stats, deadline = out / "stats.jsonl", time.monotonic() + 300
    while not (stats.exists() and stats.read_text().count("\n") >= 5):  # past the step-4 checkpoint
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0][-3000:]
        time.sleep(0.05)
    victim = next(p for p in _children(proc.pid) if _rank_of(p) == 1)
    os.kill(victim, signal.SIGKILL)
    log, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, log[-3000:]
    assert "resuming from" in log and "exitcode: -9" in log
    a = tensor_bytes(tmp_path / "straight" / "checkpoints" / "0000008.safetensors")
    b = tensor_bytes(out / "checkpoints" / "0000008.safetensors")
    assert a.keys() == b.keys() and any(k.endswith("rank1.rng.torch_cpu") for k in a)
    assert [k for k in a if a[k] != b[k]] == []


# ----- writing: verified, atomic, errors --------------------------------------------------------
def _small(path: Path, step: int, value: float = 0.0) -> Path:
    return save_checkpoint(path, CFG, tensors={"x": torch.full((64,), value + step)}, step=step,
                           meta={"run": "test"})


def test_checksum_is_stored_and_checked(tmp_path):
    path = _small(tmp_path / "ck.safetensors", 1)
    with safe_open(str(path), "pt") as f:
        assert len(f.metadata()[C.CHECKSUM_KEY]) == 64
    verify_checkpoint(path, cache=False)
    _flip_byte(path)
    with pytest.raises(CheckpointError, match="sha256") as info:
        verify_checkpoint(path, cache=False)
    assert str(path) in str(info.value)
    with pytest.raises(CheckpointError, match="sha256"):  # loading checks it too
        load_checkpoint(path)
    # a changed header value (same length: the file stays well formed) is caught too
    path = _small(tmp_path / "ck2.safetensors", 1)
    data = path.read_bytes()
    path.write_bytes(data.replace(b'"run\\": \\"test', b'"run\\": \\"best'))
    assert path.read_bytes() != data
    with pytest.raises(CheckpointError, match="sha256"):
        verify_checkpoint(path, cache=False)
    path.write_bytes(data[:-5])
    with pytest.raises(CheckpointError, match="truncated"):
        verify_checkpoint(path, full=False)


def test_bad_read_back_keeps_previous(tmp_path, monkeypatch):
    """The disk hands back other bytes than were written: the save fails, the old file stays."""
    path = _small(tmp_path / "ck.safetensors", 1)
    before = path.read_bytes()
    real = atomic_write.write_safetensors

    def flaky(f, tensors, metadata):
        real(f, tensors, metadata)
        f.flush()
        (tmp,) = _temps(tmp_path)
        _flip_byte(tmp)

    monkeypatch.setattr(atomic_write, "write_safetensors", flaky)
    with pytest.raises(CheckpointError, match="reading it back failed") as info:
        _small(path, 2)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["ck.safetensors"]


def test_disk_full_names_space_and_keeps_previous(tmp_path, monkeypatch):
    path = _small(tmp_path / "ck.safetensors", 1)
    before = path.read_bytes()

    def full(f, tensors, metadata):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic_write, "write_safetensors", full)
    with pytest.raises(CheckpointError) as info:
        _small(path, 2)
    msg = str(info.value)
    assert str(path) in msg and "no space left" in msg and "needs about" in msg and "free" in msg
    assert "\n" not in msg
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["ck.safetensors"]
    monkeypatch.undo()
    # too little free space is found before anything is written
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 100, 100))
    with pytest.raises(CheckpointError, match=r"needs about .*100 bytes free"):
        _small(tmp_path / "other.safetensors", 2)
    assert os.listdir(tmp_path) == ["ck.safetensors"]


def test_unwritable_folder(tmp_path, monkeypatch):
    folder = tmp_path / "ro"
    path = _small(folder / "ck.safetensors", 1)
    before = path.read_bytes()
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):  # root ignores the mode: refuse like the file system would

            real_open = os.open

            def refuse(file, flags, *a, **k):
                if Path(file).parent == folder and flags & os.O_CREAT:
                    raise PermissionError(errno.EACCES, "Permission denied", str(file))
                return real_open(file, flags, *a, **k)

            monkeypatch.setattr(os, "open", refuse)
        with pytest.raises(CheckpointError, match="not writable") as info:
            _small(path, 2)
        assert str(path) in str(info.value) and "\n" not in str(info.value)
    finally:
        folder.chmod(0o700)
    assert path.read_bytes() == before and os.listdir(folder) == ["ck.safetensors"]


# ----- reading a checkpoints folder: latest valid, temp files, rotation --------------------------
def test_latest_checkpoint_skips_corrupt_and_cleans_temps(tmp_path):
    for step in (2, 4, 6):
        _small(rundir.checkpoint_path(tmp_path, step), step)
    four, six = rundir.checkpoint_path(tmp_path, 4), rundir.checkpoint_path(tmp_path, 6)
    six.write_bytes(six.read_bytes()[:100])
    _flip_byte(four)
    dead = tmp_path / f".0000008.safetensors.{temp_path(six).name.split('.')[3]}.{_dead_pid()}.x1.tmp"
    live = temp_path(tmp_path / "0000008.safetensors")  # this process: a write under way
    foreign_old = tmp_path / ".0000008.safetensors.00000000.1.x2.tmp"
    for p in (dead, live, foreign_old):
        p.write_bytes(b"partial")
    os.utime(foreign_old, (time.time() - 2 * C.STALE_TEMP_SECONDS,) * 2)
    said: list[str] = []
    assert latest_checkpoint(tmp_path, said.append) == rundir.checkpoint_path(tmp_path, 2)
    assert len(said) == 2 and str(six) in said[0] and str(four) in said[1]
    assert not dead.exists() and not foreign_old.exists() and live.exists()
    assert list_checkpoints(tmp_path)[-1] == six  # listing is not verification
    assert remove_stale_temps(tmp_path) == []


def test_rotation_deletes_only_behind_a_verified_checkpoint(tmp_path):
    for step in (1, 2, 3):
        _small(rundir.checkpoint_path(tmp_path, step), step)
        rundir.rotate_checkpoints(tmp_path, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["0000002.safetensors", "0000003.safetensors"]
    assert os.readlink(tmp_path / "latest.safetensors") == "0000003.safetensors"
    # a newer file that does not verify: latest stays, nothing valid is deleted for it
    bad = rundir.checkpoint_path(tmp_path, 4)
    bad.write_bytes(b"\x10" + b"\0" * 7 + b"{}")
    assert rundir.rotate_checkpoints(tmp_path, keep=1, warn=lambda m: None) == [
        rundir.checkpoint_path(tmp_path, 2)]
    assert [p.name for p in list_checkpoints(tmp_path)] == ["0000003.safetensors", "0000004.safetensors"]
    assert os.readlink(tmp_path / "latest.safetensors") == "0000003.safetensors"
    # a corrupt older one does not count as kept
    _small(rundir.checkpoint_path(tmp_path, 2), 2)
    _small(rundir.checkpoint_path(tmp_path, 1), 1)
    rundir.checkpoint_path(tmp_path, 2).write_bytes(b"junk")
    assert rundir.rotate_checkpoints(tmp_path, keep=2, warn=lambda m: None) == [
        rundir.checkpoint_path(tmp_path, 2)]
    assert [p.name for p in list_checkpoints(tmp_path)] == [f"000000{s}.safetensors" for s in (1, 3, 4)]


def test_latest_link_and_fallbacks(tmp_path, monkeypatch):
    for step in (1, 2):
        _small(rundir.checkpoint_path(tmp_path, step), step)
    assert rundir.update_latest(tmp_path, rundir.checkpoint_path(tmp_path, 1)).is_symlink()
    assert rundir.update_latest(tmp_path, rundir.checkpoint_path(tmp_path, 2)).is_symlink()
    assert os.readlink(tmp_path / "latest.safetensors") == "0000002.safetensors"  # relative
    # a kill between a save's rename and the link update: the next look moves latest forward
    rundir.update_latest(tmp_path, rundir.checkpoint_path(tmp_path, 1))
    assert latest_checkpoint(tmp_path) == rundir.checkpoint_path(tmp_path, 2)
    assert os.readlink(tmp_path / "latest.safetensors") == "0000002.safetensors"
    assert load_checkpoint(tmp_path / "latest").step == 2
    assert not _temps(tmp_path)

    def no_symlink(*a, **k):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "symlink", no_symlink)  # e.g. Windows without the privilege: hard link
    link = rundir.update_latest(tmp_path, rundir.checkpoint_path(tmp_path, 1))
    assert not link.is_symlink() and link.stat().st_ino == rundir.checkpoint_path(tmp_path, 1).stat().st_ino
    assert load_checkpoint(tmp_path / "latest.safetensors").step == 1
    monkeypatch.setattr(os, "link", no_symlink)  # neither: latest.txt names the file
    txt = rundir.update_latest(tmp_path, rundir.checkpoint_path(tmp_path, 2))
    assert txt.name == "latest.txt" and txt.read_text() == "0000002.safetensors\n"
    assert not (tmp_path / "latest.safetensors").exists()
    for name in ("latest", "latest.safetensors"):
        assert resolve_checkpoint(tmp_path / name) == rundir.checkpoint_path(tmp_path, 2)
        assert load_checkpoint(tmp_path / name).step == 2
    assert not _temps(tmp_path)
    monkeypatch.undo()
    assert rundir.update_latest(tmp_path, rundir.checkpoint_path(tmp_path, 1)).is_symlink()
    assert not (tmp_path / "latest.txt").exists()
    # a folder holding no valid checkpoint is a one-line error
    with pytest.raises(CheckpointError, match="holds no valid step checkpoint"):
        load_checkpoint(tmp_path / "empty" / "latest")


# ----- what a run writes: best-* metadata, latest, folders accepted ------------------------------
@pytest.mark.slow
def test_best_checkpoint_has_the_run_metadata(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    names = ["sky", "face", "hair", "eyes", "mouth"]
    classes = tmp_path / "classes.json"
    classes.write_text(json.dumps({"classes": names, "colors": {"hair": [120, 60, 20]}}))
    out = tmp_path / "run"
    assert train.main(["--batch", "4", "--length", "16", "--steps", "4", "--ckpt-every", "2",
                       "--log-every", "2", "--sample-every", "100", "--metrics", "maskfd8",
                       "--metrics-every", "2", "--device", "cpu", "--threads", "1",
                       "--class-names", str(classes), "--outdir", str(out)]) == 0
    ckpts = out / "checkpoints"
    step = inspect_checkpoint(ckpts / "0000004.safetensors")
    best = inspect_checkpoint(ckpts / "best-maskfd8.safetensors")
    assert best["config"] == step["config"]
    assert set(best["meta"]) == set(step["meta"]) | {"metric", "value"}
    assert {k: v for k, v in best["meta"].items() if k not in ("metric", "value")} == step["meta"]
    assert best["meta"]["classes"]["names"] == names and best["meta"]["args"]["class_names"] == str(classes)
    assert best["meta"]["metric"] == "maskfd8" and isinstance(best["meta"]["value"], float)
    verify_checkpoint(ckpts / "best-maskfd8.safetensors", cache=False)
    assert load_checkpoint(ckpts / "best-maskfd8.safetensors").classes.names == tuple(names)
    capsys.readouterr()
    assert cli(["info", str(ckpts / "best-maskfd8.safetensors")]) == 0
    assert "classes: 0 sky, 1 face, 2 hair, 3 eyes, 4 mouth" in capsys.readouterr().out
    # --resume accepts RUN/checkpoints/latest and a run folder
    for name in (ckpts / "latest", out):
        resumed = RunSpec.from_args(["--outdir", str(tmp_path / "next"), "--resume", str(name)], world_size=1)
        assert resumed.resume_path.resolve() == (ckpts / "0000004.safetensors").resolve()
    # latest, the run folder and the checkpoints folder all name the newest step checkpoint
    assert os.readlink(ckpts / "latest.safetensors") == "0000004.safetensors"
    for name in (out, ckpts, ckpts / "latest", ckpts / "latest.safetensors"):
        assert resolve_checkpoint(name) == ckpts / ("latest.safetensors" if name.name.startswith("latest")
                                                    else "0000004.safetensors")
        assert cli(["info", str(name)]) == 0
        text = capsys.readouterr().out
        assert "step: 4" in text and "2 hair" in text
