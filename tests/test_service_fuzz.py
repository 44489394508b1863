"""Property-based run of schemathesis against the served OpenAPI document.

For every operation, schemathesis generates valid and invalid requests from the document and checks
each response: no 5xx, status code and content type documented, body conforming to its schema,
schema-valid input accepted and invalid input rejected. Bounded (max_examples per operation) so the
suite stays fast; the seed is fixed so a failure reproduces.
"""

from __future__ import annotations

import json
from collections import Counter
import os
from pathlib import Path
from unittest import mock

import pytest
from schemathesis.core import NotSet
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance

from modclf.policy import DEFAULT_POLICY_PATH
from modclf.serving import OPENAPI_PATH, create_app

MAX_EXAMPLES = 60


@pytest.fixture(scope="module")
def fuzz_app(model_dir: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODCLF_")}
    with mock.patch.dict(os.environ, env, clear=True):
        # small limits so generated inputs reach them
        return create_app({"model_dir": str(model_dir), "policy": str(DEFAULT_POLICY_PATH),
                           "max_text_chars": 300, "max_batch": 5, "max_body_bytes": 32 * 1024})


@pytest.fixture(scope="module")
def api_schema(fuzz_app):
    return schemathesis.openapi.from_wsgi("/openapi.json", fuzz_app)


def _operations() -> list[tuple[str, str]]:
    """(method, path) of every operation in the repository's document (known at collection time)."""
    doc = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))
    return [(method.upper(), path) for path, item in doc["paths"].items() for method in item]


def _has_input(method: str, path: str) -> bool:
    doc = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))
    operation = doc["paths"][path][method.lower()]
    return bool(operation.get("parameters") or operation.get("requestBody"))


CASES = [
    pytest.param(method, path, mode, id=f"{method} {path} {mode}")
    for method, path in _operations()
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE or _has_input(method, path)  # nothing to negate otherwise
]
#: Operations where a schema-valid request can still be refused by design, so schemathesis' "valid data
#: is accepted" check does not apply: a made-up queue cursor is not one the server issued (400
#: invalid_cursor), and a decision may need a label the schema cannot require (400 label_required).
STATEFUL_400 = {("GET", "/v1/queue"), ("POST", "/v1/queue/{id}/decision")}
#: Operations that answer bad items of a good request one by one (200 with per-item errors).
PER_ITEM = {("POST", "/v1/classify/batch")}
#: Each valid admin call reloads the model (about a second): a few are enough.
EXAMPLES = {"/v1/admin/reload": 5}


# schemathesis' own pytest integration (schema.parametrize / from_fixture) needs the schema at import
# time or breaks on pytest 9; the operations' hypothesis strategies are driven directly instead.
@pytest.mark.parametrize("method,path,mode", CASES)
def test_api_conforms_to_its_openapi_document(api_schema, method: str, path: str, mode: GenerationMode) -> None:
    operation = api_schema[path][method]
    statuses: list[int] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES.get(path, MAX_EXAMPLES), deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case) -> None:
        excluded = [positive_data_acceptance] if (method, path) in STATEFUL_400 else None
        response = case.call_and_validate(excluded_checks=excluded)
        assert response.status_code < 500
        sends_nothing = isinstance(case.body, NotSet) and not case.query and not case.headers and not case.path_parameters
        if mode is GenerationMode.NEGATIVE and sends_nothing:
            return  # an optional body left out is not a negative case, whatever the generator calls it
        if mode is GenerationMode.NEGATIVE and (method, path) in PER_ITEM and response.status_code == 200:
            body = response.json()
            # the batch answers bad items one by one: each gets an error object, never a verdict
            assert body["errors"] >= 1 and all(("error" in r) != ("label" in r) for r in body["results"]), body
            return
        statuses.append(response.status_code)

    run()
    assert statuses, "no request was generated"
    if mode is GenerationMode.NEGATIVE:
        assert all(400 <= s < 500 for s in statuses), Counter(statuses)
