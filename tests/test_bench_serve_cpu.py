"""``python -m bench.serve --quick`` on the tiny model: the report's shape (p50/p95 per action,
render full vs cached, the load test with no errors, the CPU targets' verdicts), eager; both
paths (compiling: tens of seconds) in the slow test."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from bench import serve  # noqa: E402


def test_quick_report(tmp_path, capsys):
    out = tmp_path / "serve.json"
    assert serve.main(["--quick", "--models", "tiny", "--json", str(out), "--threads", "1",
                       "--paths", "eager"]) == 0
    report = json.loads(out.read_text())
    (tiny,) = report["models"]
    assert tiny["path"] == "eager" and tiny["first_call"]["render_s"] > 0
    for action in ("sample", "edit", "direction", "invert", "render_full", "render_cached_one_class"):
        r = tiny[action]
        assert r["n"] >= 3 and 0 < r["p50_ms"] <= r["p95_ms"], (action, r)
    assert tiny["invert"]["steps"] == 2
    load = report["load"]
    assert load["requests"] == 2 * 3 and load["errors"] == 0
    (target,) = report["targets"]
    assert target["measured_p50_ms"] == tiny["edit"]["p50_ms"] and target["edit_p50_ms_max"] == 100
    assert report["gpu"] == "not measured"
    assert "target: tiny eager edit p50" in capsys.readouterr().out


@pytest.mark.slow
def test_quick_report_both_paths(tmp_path, monkeypatch):
    """Both paths recorded side by side; the compiled one has its own targets (issue 25)."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    out = tmp_path / "serve.json"
    assert serve.main(["--quick", "--models", "tiny", "--json", str(out), "--clients", "0"]) == 0
    report = json.loads(out.read_text())
    assert [m["path"] for m in report["models"]] == ["eager", "compiled"]
    assert report["inductor_cache"]["at_start"] == "cold"
    limits = [(t["path"], t["edit_p50_ms_max"]) for t in report["targets"]]
    assert limits == [("eager", 100), ("compiled", 30)]
