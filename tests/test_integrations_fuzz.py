"""Schemathesis against the integrations' part of the served OpenAPI document: no 5xx, every
response documented and on its schema, invalid input rejected. Bounded and seeded.

Akismet answers a call with a missing or bad field with status 200 and a plain-text verdict
(``invalid``, ``Missing required field: ...``), not a 4xx: that is its documented contract, which
clients parse, so for the Akismet calls the "invalid data gets a 4xx" check is replaced by checking
that invalid data never gets a verdict (true/false/valid/thanks)."""

from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection

from modclf.serving.integrations.openapi import paths
from modclf.policy import DEFAULT_POLICY_PATH
from modclf.serving import create_app

from .integrations_support import server_env

MAX_EXAMPLES = 25


@pytest.fixture(scope="module")
def api_schema(model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    db = tmp_path_factory.mktemp("fuzz") / "feedback.db"
    with mock.patch.dict(os.environ, server_env(), clear=True):
        app = create_app({"model_dir": str(model_dir), "policy": str(DEFAULT_POLICY_PATH), "max_text_chars": 300,
                          "max_body_bytes": 32 * 1024, "feedback_db": f"sqlite:///{db}",
                          "coral_signing_secret": "ems_fuzz_secret", "akismet_api_keys": "fuzzkey12345"})
    return schemathesis.openapi.from_wsgi("/openapi.json", app)


CASES = [
    pytest.param(method.upper(), path, mode, id=f"{method.upper()} {path} {mode}")
    for path, item in paths(coral=True, akismet=True).items()
    for method, operation in item.items()
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE or operation.get("requestBody") or operation.get("parameters")
]


@pytest.mark.parametrize("method,path,mode", CASES)
def test_integrations_conform_to_their_openapi_document(api_schema, method: str, path: str, mode: GenerationMode) -> None:
    operation = api_schema[path][method]
    statuses: list[int] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case) -> None:
        akismet = path.startswith("/akismet/")
        response = case.call_and_validate(excluded_checks=[negative_data_rejection] if akismet else None)
        assert response.status_code < 500
        if akismet and mode is GenerationMode.NEGATIVE and response.status_code == 200:
            assert response.text in ("invalid", "Missing required field: user_ip.",
                                     "Missing required field: comment_content."), response.text
        statuses.append(response.status_code)

    run()
    assert statuses, "no request was generated"
