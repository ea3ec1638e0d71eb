"""The editor's API against its own OpenAPI document (``/api/openapi.json``, ssgan.serve.openapi):
the document lists exactly the routes; a bounded schemathesis run against a live ``ssgan serve``
on 127.0.0.1 (the trained tiny model) finds no 5xx and no answer outside the document."""

from __future__ import annotations

import os
import time

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")
from starlette.routing import Route  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

import ssgan  # noqa: E402
from ssgan.classes import ClassInfo  # noqa: E402
from ssgan.serve.app import create_app  # noqa: E402
from ssgan.serve.engine import Engine  # noqa: E402
from ssgan.serve.routes import ROUTES  # noqa: E402

# schemathesis cases per endpoint (half of them with a live session); SSGAN_API_CASES=500 is the
# longer run of docs/reliability.md, "Editor API"
CASES_PER_OPERATION = int(os.environ.get("SSGAN_API_CASES", "150"))
BUDGET_S = max(120, 0.8 * CASES_PER_OPERATION)  # the whole run's bound: 2 minutes in the suite


CFG = ssgan.preset("tiny")


def routed() -> set[tuple[str, str]]:
    """(method, path) of every /api/ route (HEAD, which Starlette adds to GET, left out)."""
    return {(m.lower(), r.path) for r in ROUTES if isinstance(r, Route) and r.path.startswith("/api/")
            for m in (r.methods or ()) if m != "HEAD"}


def test_the_document_lists_exactly_the_routes():
    import ssgan
    from tests.test_serve import CFG, NAMES  # noqa: F401  (the module's tiny engine)

    client = TestClient(create_app(Engine(ssgan.SemanticGenerator(CFG), ClassInfo(NAMES, (4,)))))
    doc = client.get("/api/openapi.json").json()
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == routed()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert "200" in op["responses"], (method, path)
            for status, answer in op["responses"].items():
                if status != "200":
                    error = answer["content"]["application/json"]["schema"]
                    assert error == {"$ref": "#/components/schemas/Error"}
    edit = doc["paths"]["/api/edit"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert edit["properties"]["direction"]["enum"] == ["pc1", "pc2", "pc3", "pc4", "pc5"]
    assert edit["properties"]["classes"]["items"]["maximum"] == CFG.seg_dim - 1
    schemathesis = pytest.importorskip("schemathesis")
    schema = schemathesis.openapi.from_dict(doc)
    assert len([op for op in schema.get_all_operations()]) == len(routed())


def fuzz_operation(op, url: str, http, checks: list, failures: list[str]) -> dict:
    """Run ``CASES_PER_OPERATION`` schemathesis cases of ``op`` (positive and negative data: inside
    and outside the document) against ``url``; a failed check is appended to ``failures``."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st
    from schemathesis import GenerationMode

    strategies = [op.as_strategy(GenerationMode.POSITIVE)]
    if op.body or any(True for _ in op.iter_parameters()):
        strategies.append(op.as_strategy(GenerationMode.NEGATIVE))
    n = {"cases": 0, "statuses": {}}
    sessions = [http.post(f"{url}/api/session", json={}).json()["session"] for _ in range(2)]

    @given(case=st.one_of(strategies))
    @settings(max_examples=CASES_PER_OPERATION, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    def run(case) -> None:
        n["cases"] += 1
        if n["cases"] % 2:  # half the cases name a live session, half whatever was generated
            sid = sessions[n["cases"] % 4 // 2]
            if isinstance(case.body, dict) and "session" in case.body:
                case.body["session"] = sid
            if case.query and "session" in case.query:
                case.query["session"] = sid
        try:
            r = case.call_and_validate(base_url=url, session=http, checks=checks, timeout=60)
            n["statuses"][r.status_code] = n["statuses"].get(r.status_code, 0) + 1
        except Exception as e:  # a failed check: recorded, the run goes on
            failures.append(f"{op.label}: {str(e).strip()[:600]}")

    run()
    return n


@pytest.mark.slow
def test_schemathesis_finds_no_5xx_and_nothing_outside_the_document():
    schemathesis = pytest.importorskip("schemathesis")
    import requests
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    from bench.live import LiveServer

    checks = [not_a_server_error, status_code_conformance, content_type_conformance,
              response_schema_conformance]
    counts: dict[str, dict] = {}
    failures: list[str] = []
    t0 = time.monotonic()
    with LiveServer(["--invert-steps", "2"]) as server:
        schema = schemathesis.openapi.from_url(f"{server.url}/api/openapi.json")
        with requests.Session() as http:
            for result in schema.get_all_operations():
                op = result.ok()
                counts[op.label] = fuzz_operation(op, server.url, http, checks, failures)
            assert server.alive()
            assert http.get(f"{server.url}/api/info").status_code == 200
        log = server.stop()
    seconds = time.monotonic() - t0
    total = sum(c["cases"] for c in counts.values())
    print(f"schemathesis: {total} cases over {len(counts)} operations in {seconds:.0f} s, "
          f"{len(failures)} failures; {counts}")
    assert not failures, "\n".join(failures[:10])
    assert "Traceback" not in log, log[-3000:]
    assert seconds < BUDGET_S
