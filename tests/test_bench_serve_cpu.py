"""``python -m bench.serve --quick`` on the tiny model: the report's shape (p50/p95 per action,
render full vs cached, the load test with no errors, the CPU target's verdict)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from bench import serve  # noqa: E402


def test_quick_report(tmp_path, capsys):
    out = tmp_path / "serve.json"
    assert serve.main(["--quick", "--models", "tiny", "--json", str(out), "--threads", "1"]) == 0
    report = json.loads(out.read_text())
    (tiny,) = report["models"]
    for action in ("sample", "edit", "direction", "invert", "render_full", "render_cached_one_class"):
        r = tiny[action]
        assert r["n"] >= 3 and 0 < r["p50_ms"] <= r["p95_ms"], (action, r)
    assert tiny["invert"]["steps"] == 2
    load = report["load"]
    assert load["requests"] == 2 * 3 and load["errors"] == 0
    assert report["target"]["measured_p50_ms"] == tiny["edit"]["p50_ms"]
    assert report["gpu"] == "not measured"
    assert "target: tiny-model edit p50" in capsys.readouterr().out
