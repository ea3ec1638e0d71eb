"""A short soak of ``ssgan serve`` (``bench.soak``; the 8 clients × 5 minutes run is in
docs/reliability.md, "Editor under load"): edits, uploads and session churn past the 64-session
cap against a live server on 127.0.0.1; no error, evicted sessions answered 404, the server alive,
its descriptors flat and its memory bounded."""

from __future__ import annotations

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")


@pytest.mark.slow
def test_a_short_soak_has_no_error_and_evicts_sessions_cleanly():
    from bench.soak import SESSION_CAP, soak

    r = soak(clients=4, seconds=45)
    print(r)
    assert r["errors"] == 0, r["error_examples"]
    assert r["server_alive"] and r["server_tracebacks"] == 0
    assert r["sessions_created"] > SESSION_CAP and r["evicted_404"] > 0
    assert r["fds"]["max"] <= r["fds"]["start"] + 16  # sockets of 4 clients, no leak
    assert r["rss_mb"]["max"] < r["rss_mb"]["start"] + 600
