"""bench.invert on CPU: the record maths and a real tiny run (the no-CUDA refusal:
tests/test_bench_no_cuda.py)."""

import json

import pytest

from bench import invert as BI


def test_record_from_fake_measurements():
    r = BI.make_record(512, 8, 400, "celeba-512", {"s": 120.0, "peak_mib": 9000.0}, {"s": 40.0})
    assert r["name"] == "invert_512" and r["speedup"] == pytest.approx(3.0)
    assert r["reference_s_per_image"] == pytest.approx(15.0) and r["ssgan_s_per_image"] == pytest.approx(5.0)
    assert r["ssgan_images_per_s"] == pytest.approx(0.2) and r["target_met"] is True
    oom = BI.make_record(256, 8, 400, "celeba-256", {"error": "out of memory: x"}, {"s": 10.0})
    assert oom["reference_s"] is None and oom["speedup"] is None and "target_met" not in oom
    assert "out of memory" in oom["errors"]["reference"]


def test_tiny_cpu_run(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert BI.main(["--device", "cpu", "--preset", "tiny", "--resolutions", "32", "--batch", "2",
                    "--steps", "3", "--warmup", "1", "--json", str(out), "--paths", "ssgan,reference"]) == 0
    report = json.loads(out.read_text())
    (rec,) = report["benchmarks"]
    assert rec["config"] == {"preset": "tiny", "resolution": 32, "batch": 2, "steps": 3}
    assert rec["reference_s"] > 0 and rec["ssgan_s"] is None and "Triton" in rec["errors"]["ssgan"]
    assert rec["compiled_s"] is None and rec["reference_warmup_s"] > 0
    assert rec["reference_images_per_s"] == pytest.approx(2 / rec["reference_s"])
    assert "no GPU figures" in report["note"] and report["device"] == "cpu"
    assert "invert_32" in capsys.readouterr().out


@pytest.mark.slow
def test_tiny_cpu_compiled_path(tmp_path, monkeypatch):
    """The compiled path beside the eager one (compiling: tens of seconds, cold cache)."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    out = tmp_path / "b.json"
    assert BI.main(["--dry-run", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    (rec,) = report["benchmarks"]
    assert rec["reference_s"] > 0 and rec["compiled_s"] > 0 and rec["compiled_speedup"] > 0
    assert rec["compiled_warmup_s"] > 0 and report["inductor_cache"]["at_start"] == "cold"
