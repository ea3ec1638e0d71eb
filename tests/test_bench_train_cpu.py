"""bench.train on CPU: the report maths with fake measurements, the table renderer, and a real
(tiny) run of the step runner and of the developer smoke mode."""

import json

import pytest
import torch

from bench import table
from bench import train as BT
from ssgan import preset


def fake_measure(calls):
    values = {("reference", 256): {"ms": 400.0, "peak_mib": 9000.0, "flops": 2e13},
              ("ssgan", 256): {"ms": 100.0, "peak_mib": 3000.0},
              ("reference", 512): {"error": "out of memory: CUDA out of memory"},
              ("ssgan", 512): {"ms": 250.0, "peak_mib": 8000.0}}

    def measure(path, res):
        calls.append((path, res))
        return values[(path, res)]
    return measure


def test_report_from_fake_measurements():
    calls = []
    recs = BT.collect([256, 512], 16, fake_measure(calls), peak_bf16=1000.0,
                      configs=lambda r: {"preset": f"celeba-{r}"})
    assert calls == [("reference", 256), ("ssgan", 256), ("reference", 512), ("ssgan", 512)]
    assert [r["name"] for r in recs] == ["train_step", "train_step_256", "train_step_512"]
    r = recs[0]
    assert r["speedup"] == pytest.approx(4.0) and r["memory_ratio"] == pytest.approx(3.0)
    assert r["images_per_s"] == pytest.approx(160.0) and r["sec_per_kimg"] == pytest.approx(6.25)
    assert r["mfu"] == pytest.approx(2e13 / 0.1 / 1e15) and r["reference_mfu"] == pytest.approx(0.05)
    assert r["config"] == {"preset": "celeba-256", "resolution": 256, "batch": 16}
    r512 = recs[2]
    assert r512["reference_ms"] is None and r512["speedup"] is None and r512["mfu"] is None
    assert "out of memory" in r512["errors"]["reference"] and r512["images_per_s"] == pytest.approx(64.0)
    env = {"device": "X", "commit": "c", "torch": "t", "triton": "tr"}
    report = BT.make_report(recs, env, {"bf16": 1000.0})
    for k in ("device", "commit", "torch", "triton", "date", "benchmarks", "data"):
        assert k in report
    assert "synthetic" in report["data"]
    text = table.render(json.loads(json.dumps(report)))
    assert "| celeba-256 | 16 | 400.0 | 100.0 | 4.00× | 160.0 | 6.2 | 9000 | 3000 | 5.0% | 20.0% |" in text
    assert "| celeba-512 | 16 | – | 250.0 |" in text
    assert BT.format_table(report).count("train_step") == 3


def test_time_iterations_with_fake_clock():
    class Runner:
        def __init__(self):
            self.seen = []

        def iteration(self, i, clock=None):
            self.seen.append(i)

    ticks = iter([10.0, 13.2])
    runner, syncs = Runner(), []
    ms = BT.time_iterations(runner, 2, 16, lambda: syncs.append(1), clock=lambda: next(ticks))
    assert runner.seen == list(range(18)) and len(syncs) == 2
    assert ms == pytest.approx(3.2e3 / 16)
    assert BT.amortised_flops({"d": 1.0, "g": 2.0, "r1": 16.0, "pl": 4.0}) == pytest.approx(5.0)


def test_step_runner_runs_and_counts_flops():
    runner = BT.StepRunner(preset("tiny"), 4, "cpu", "reference", "fp32", compile=False)
    before = [p.detach().clone() for p in runner.D.parameters()]
    flops = runner.count_flops()
    assert all(flops[k] > 0 for k in ("d", "r1", "g", "pl"))
    assert flops["r1"] > flops["d"] / 4  # double backward counted
    assert flops["iteration"] == pytest.approx(BT.amortised_flops(flops))
    for i in range(2):
        runner.iteration(i)
    assert all(torch.isfinite(v).all() for v in runner.losses.values())
    assert set(runner.losses) >= {"d", "r1_img", "g", "mask", "path"}
    assert any(not torch.equal(a, b) for a, b in zip(before, runner.D.parameters(), strict=True))


@pytest.mark.slow
def test_developer_smoke_run(tmp_path, capsys):
    out = tmp_path / "dev.json"
    assert BT.main(["--device", "cpu", "--preset", "tiny", "--steps", "1", "--warmup", "1",
                    "--resolutions", "32", "--batch", "4", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert "NOT a benchmark" in report["note"]
    r = report["benchmarks"][0]
    assert r["name"] == "train_step" and r["reference_ms"] > 0 and r["ssgan_ms"] > 0
    assert r["model_gflop_per_iteration"] > 0 and r["mfu"] is None
