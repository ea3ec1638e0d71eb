"""bench/gpu_session.sh and its helpers on CPU: the whole session as a dry run (every stage, toy
shapes, its JSON keys), the stage envelope when a stage times out, the targets, the per-phase
maths and the README table renderer."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench import learning as BL
from bench import session, table
from bench import train as BT
from ssgan.train import steps as T
from ssgan.train.spec import DEFAULT_EMA_RAMPUP

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "gpu_session.sh"
ENVELOPE = set(session.ENVELOPE)
# What each stage of the script must leave (stages added later are held to the envelope only).
STAGE_KEYS = {
    "env": {"device", "ceilings", "parity", "parity_ok", "parity_shapes", "complete"},
    "kernels": {"device", "peak_tflops", "benchmarks", "timing", "class_sweep", "complete"},
    "train_256": {"device", "peak_tflops", "benchmarks", "timing", "lazy_every", "complete"},
    "cuda_tests": {"summary", "counts", "failed", "exit_code", "complete"},
    "train_512": {"device", "peak_tflops", "benchmarks", "timing", "lazy_every", "complete"},
    "learning": {"device", "config", "initial", "runs", "comparison", "pass", "complete"},
    "metrics": {"weights", "budget", "extractor", "generation", "precision_check", "fid4_full", "complete"},
    "invert": {"device", "budget", "benchmarks", "complete"},
}
STAGES = ["env", "kernels", "train_256", "cuda_tests", "train_512", "learning", "metrics", "invert"]
COMMON_RECORD = {"name", "config", "reference_ms", "ssgan_ms", "speedup", "reference_peak_mib",
                 "ssgan_peak_mib", "memory_ratio"}
KERNEL_RECORD = COMMON_RECORD | {"ssgan_tflops", "pct_of_peak", "gflop"}
TRAIN_RECORD = COMMON_RECORD | {"images_per_s", "mfu", "model_gflop_per_iteration", "phases", "compile",
                                "ssgan_profile"}


def listed_stages(*args: str) -> list[str]:
    out = subprocess.run(["bash", str(SCRIPT), "--list", *args], capture_output=True, text=True,
                         check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def test_stage_list_in_priority_order():
    names = listed_stages()
    assert names == STAGES
    assert len(names) <= 8, "$OUT brings back at most 8 files: one per stage"


def test_stages_option_selects_stages_in_priority_order():
    assert listed_stages("--stages", "invert,learning,metrics") == ["learning", "metrics", "invert"]
    assert listed_stages("--stages", "env") == ["env"]
    for bad, message in (("invert,nope", "no stage 'nope'"), ("", "at least one stage")):
        proc = subprocess.run(["bash", str(SCRIPT), "--list", "--stages", bad], capture_output=True,
                              text=True)
        assert proc.returncode == 2 and message in proc.stderr and not proc.stdout


@pytest.mark.slow
def test_stages_option_dry_run_of_one_stage(tmp_path):
    """A dry run of one cheap stage runs that stage alone and summarises it alone."""
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "OUT")}
    env["PYTHON"] = sys.executable
    proc = subprocess.run(["bash", str(SCRIPT), "--dry-run", "--stages", "invert", "--out", str(tmp_path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert [p.name for p in tmp_path.iterdir()] == ["invert-dry-run.json"]
    report = json.loads((tmp_path / "invert-dry-run.json").read_text())
    assert report["status"] == "ok" and report["complete"] and report["budget"]["steps"] == 2
    summary = proc.stdout[proc.stdout.rindex("GPU session summary"):]
    assert "invert" in summary and not any(f"\n{name} " in summary for name in STAGES if name != "invert")


@pytest.mark.slow
def test_dry_run_session(tmp_path):
    out = tmp_path / "dry"
    before = sorted((ROOT / "bench" / "results").glob("*")) if (ROOT / "bench" / "results").exists() else []
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "OUT")}
    env["PYTHON"] = sys.executable
    proc = subprocess.run(["bash", str(SCRIPT), "--dry-run", "--out", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=2400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    after = sorted((ROOT / "bench" / "results").glob("*")) if (ROOT / "bench" / "results").exists() else []
    assert after == before, "a dry run must not write bench/results/"
    summary = proc.stdout[proc.stdout.rindex("GPU session summary"):]
    reports = {}
    for name in listed_stages():
        path = out / f"{name}-dry-run.json"
        report = json.loads(path.read_text())
        reports[name] = report
        assert ENVELOPE <= set(report), (name, ENVELOPE - set(report))
        assert STAGE_KEYS.get(name, set()) <= set(report), (name, STAGE_KEYS[name] - set(report))
        assert report["status"] == "ok", (name, report["log_tail"])
        assert report["dry_run"] is True and "NOT GPU figures" in report["note"]
        assert name in summary
    assert "DRY RUN" in summary and "targets:" in summary

    parity = reports["env"]["parity"]
    assert set(parity) == {"grouped_mlp", "fuse", "bias_act", "upfirdn2d"} and reports["env"]["parity_ok"]
    for per_dtype in parity.values():
        assert set(per_dtype) == {"fp32", "bf16"}
        for r in per_dtype.values():
            assert r["fwd"] and r["bwd"] and all(0 <= e <= r["bound"] for e in r["fwd"] + r["bwd"])
    ceilings = reports["env"]["ceilings"]
    assert ceilings["copy_gb_per_s"] > 0 and ceilings["bf16_matmul_tflops"] > 0

    kernels = reports["kernels"]["benchmarks"]
    assert len(kernels) == 12 and all(KERNEL_RECORD <= set(r) for r in kernels)
    sweep = reports["kernels"]["class_sweep"]  # the K sweep of bench.classes, timed (toy K in a dry run)
    assert [(r["config"]["K"], r["config"]["dtype"]) for r in sweep] == [
        (2, "bf16"), (2, "fp32"), (4, "bf16"), (4, "fp32")]
    assert all(KERNEL_RECORD <= set(r) and r["name"] == "local_generators_fwd_bwd" for r in sweep)
    for name in ("train_256", "train_512"):
        recs = reports[name]["benchmarks"]
        assert recs[0]["name"] == "train_step" and all(TRAIN_RECORD <= set(r) for r in recs)
        for path in ("reference", "ssgan"):
            phases = recs[0]["phases"][path]
            assert phases["d"]["calls"] == phases["g"]["calls"] == 2 and phases["r1"]["calls"] == 1
            assert recs[0]["compile"][path]["first_iteration_ms"]["d"] > 0
    profile = reports["train_256"]["benchmarks"][0]["ssgan_profile"]
    assert profile["window_iterations"] == 2 and 0 < len(profile["kernels"]) <= 25
    assert reports["train_512"]["benchmarks"][0]["ssgan_profile"] is None
    assert "deselected" in reports["cuda_tests"]["summary"] and reports["cuda_tests"]["counts"]["skipped"] > 0

    learning = reports["learning"]
    assert set(learning["runs"]) == {"reference", "fast"} and learning["config"]["steps"] == 2
    cfg = learning["config"]  # trained as train.py trains a new run: auto R1, G-EMA ramp-up
    assert (cfg["r1_img"], cfg["r1_seg"]) == T.r1_auto(BL.CPU_CONFIG, cfg["batch"])
    assert cfg["ema_rampup"] == DEFAULT_EMA_RAMPUP > 0
    for run in learning["runs"].values():  # with the ramp-up, G-EMA follows G from the first steps
        assert BL.frequency_l1(torch.tensor(run["g_ema"]["class_frequencies"]),
                               torch.tensor(run["g"]["class_frequencies"])) < 0.02
    assert learning["comparison"]["g_ema"] == BL.compare(learning["runs"]["reference"]["g_ema"],
                                                        learning["runs"]["fast"]["g_ema"])
    metrics = reports["metrics"]
    check = metrics["precision_check"]
    assert check["skipped"] and "Inception weights" in check["reason"]
    assert metrics["budget"]["n"] == 4 and metrics["generation"]["images_per_s_fast"] > 0
    fid = metrics["fid4_full"]
    assert fid["with_real_statistics"]["seconds"] > 0 and fid["real_statistics_cached"]["seconds"] > 0
    (inv,) = reports["invert"]["benchmarks"]
    assert inv["name"] == "invert_32" and inv["reference_s"] > 0 and "ssgan" in inv["errors"]
    for gist in ("fast vs reference G-EMA masks", "FID fast vs fp32 skipped", "invert_32: ",
                 "by class count (faster, less memory): K=2 "):
        assert gist in summary, gist

    rendered = subprocess.run([sys.executable, "-m", "bench.table", str(out)], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout
    for text in ("DRY RUN", "Parity against float64", "| grouped_mlp | bf16 |", "local_generators_fwd_bwd",
                 "Per-phase breakdown", "| R1 (lazy) |", "Compilation and tuning", "Top ", "pytest -m cuda",
                 "Targets:"):
        assert text in rendered, text


def test_finish_marks_a_stage_that_left_no_json(tmp_path):
    log = tmp_path / "env.log"
    log.write_text("\n".join(f"line {i}" for i in range(100)))
    path = tmp_path / "env-x.json"
    r = session.finish("env", path, 124, 90, 95.2, log, dry_run=False, copy_to=tmp_path / "out")
    assert r["status"] == "timed_out" and r["log_tail"][-1] == "line 99" and len(r["log_tail"]) == 25
    assert json.loads((tmp_path / "out" / "env-x.json").read_text()) == r
    partial = tmp_path / "kernels-x.json"
    partial.write_text(json.dumps({"benchmarks": [], "complete": False}))
    r = session.finish("kernels", partial, 1, 80, 3.0, None, dry_run=True)
    assert r["status"] == "failed" and r["completed"] is False and "NOT GPU" in r["note"]
    r = session.finish("train_512", tmp_path / "t.json", None, 150, 0.0, None, dry_run=False, skipped=True)
    assert r["status"] == "skipped" and ENVELOPE <= set(r)
    text = session.summary(tmp_path, "-x", ["env", "kernels", "missing"])
    assert "timed_out" in text and "failed" in text and "no JSON" in text


def test_targets_met_missed_and_unmeasured():
    kernels = {"benchmarks": [{"name": "local_generators_fwd_bwd", "config": {"dtype": "bf16"},
                               "speedup": 12.0, "memory_ratio": 4.0}]}
    train = {"benchmarks": [{"name": "train_step_256", "config": {}, "speedup": 4.5, "memory_ratio": None,
                             "mfu": 0.31}]}
    got = table.check_targets([kernels, train])
    assert [ok for _, ok in got] == [True, False, True, None, True]
    assert "12.00x" in got[0][0] and "31.0 %" in got[4][0] and "not measured" in got[3][0]


def test_phase_breakdown_amortises_lazy_phases():
    intervals = [("d", 2.0), ("r1", 8.0), ("g", 3.0), ("pl", 4.0), ("ema", 1.0)] + [("d", 2.0), ("g", 3.0),
                                                                                   ("ema", 1.0)] * 3
    p = BT.phase_breakdown(intervals, 4)
    assert p["r1"] == {"calls": 1, "ms_per_call": 8.0, "ms_per_iteration": 2.0}
    assert p["d"]["ms_per_call"] == 2.0 and p["g"]["ms_per_iteration"] == 3.0
    assert sum(v["ms_per_iteration"] for v in p.values()) == pytest.approx(sum(ms for _, ms in intervals) / 4)
    c = BT.compile_report([("d", 502.0), ("g", 1003.0)], p)
    assert c["compile_and_tune_s"] == pytest.approx(1.5)
