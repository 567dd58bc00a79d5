"""docs/openapi.json describes exactly the routes the inference API serves: it parses as an
OpenAPI 3.1 document, lists every route of ``ROUTES`` with its method, and every listed route
answers on the real ASGI app (not a 404 "no such endpoint"), while a route not listed does."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from agent.serving.inference_api import ROUTES
from agent.update.selftest import LoadedVersion, gate
from testing.agents import SAMPLES, make_bundle
from tests.agent.serving.test_inference_api_fuzz import call, make_app

DOC = Path(__file__).resolve().parents[3] / "docs" / "openapi.json"


def test_the_document_parses_and_lists_every_route() -> None:
    doc = json.loads(DOC.read_text())
    assert doc["openapi"].startswith("3.1")
    listed = {(m.upper(), path) for path, item in doc["paths"].items() for m in item}
    assert listed == set(ROUTES)
    refs = {r.split("/")[-1] for r in _values(doc, "$ref") if r.startswith("#/components/schemas/")}
    assert refs <= set(doc["components"]["schemas"]), refs - set(doc["components"]["schemas"])
    for path, item in doc["paths"].items():
        for op in item.values():
            params = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert params == set(_placeholders(path)), path


def _values(node: object, key: str) -> list[str]:
    if isinstance(node, dict):
        found = [v for k, v in node.items() if k == key and isinstance(v, str)]
        return found + [x for v in node.values() for x in _values(v, key)]
    if isinstance(node, list):
        return [x for v in node for x in _values(v, key)]
    return []


def _placeholders(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


@pytest.fixture(scope="module")
def loaded(signing_keys: Path) -> LoadedVersion:
    version = gate(make_bundle(signing_keys, 1), threads=1, memory_budget_mb=1e6, max_latency_ms=0)
    assert version.gate.passed, version.gate.detail
    return version


def test_every_listed_route_is_served_and_others_are_not(loaded: LoadedVersion) -> None:
    app = make_app(loaded)
    infer = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [1, 1, 8, 8],
                    "datatype": "FP32",
                    "data": SAMPLES[:1].ravel().tolist(),
                }
            ]
        }
    ).encode()
    v1 = json.dumps({"inputs": {"input": SAMPLES[:1].tolist()}}).encode()
    try:
        for method, template in ROUTES:
            path = template.replace("{model}", "digits").replace("{version}", "1.0.1")
            body = (infer if "/v2/" in path else v1) if method == "POST" else b""
            status, _, answer = asyncio.run(call(app, method, path, body))
            assert status == 200, (method, path, answer[:200])
        for method, path in [
            ("GET", "/v2/models"),
            ("GET", "/v2/models/digits/versions"),
            ("GET", "/v2/models/digits/stats"),
            ("GET", "/v2/health"),
            ("GET", "/v1/models/digits/infer"),
            ("GET", "/v3"),
        ]:
            status, _, answer = asyncio.run(call(app, method, path))
            assert status == 404 and b"no such endpoint" in answer, (path, status)
    finally:
        app.close()
