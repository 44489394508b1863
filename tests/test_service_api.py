"""The HTTP API through Flask's test client: every endpoint, every kind of bad input, auth, config."""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modclf.labels import LABELS
from modclf.model import ModelError
from modclf.policy import DEFAULT_POLICY_PATH, PolicyError, load_policy
from modclf.serving import create_app
from modclf.errors import ConfigError
from modclf.settings import Settings, load_settings

SPAM = "Earn $500 a day from home!!! Click www.easy-cash-now.com and sign up today, limited offer"
QUESTION = "Does anyone know which town this was filmed in? The article does not say."


def clean_env() -> dict[str, str]:
    """The environment without MODCLF_* settings, so a developer's shell cannot change the tests."""
    return {k: v for k, v in os.environ.items() if not k.startswith("MODCLF_")}


def make_app(model_dir: Path, **config: Any):
    with mock.patch.dict(os.environ, clean_env(), clear=True):
        return create_app({"model_dir": str(model_dir), "policy": str(DEFAULT_POLICY_PATH), **config})


@pytest.fixture(scope="module")
def app(model_dir: Path):
    return make_app(model_dir, max_text_chars=2000, max_batch=8, max_body_bytes=64 * 1024, explain_top=5)


@pytest.fixture()
def client(app):
    return app.test_client()


def assert_error(response, status: int, code: str) -> dict[str, Any]:
    """A documented error: the status, JSON body {"error": {"code", "message"}} and nothing else."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    assert body["error"]["message"] and "Traceback" not in body["error"]["message"]
    return body["error"]


# -- classify ------------------------------------------------------------------------------------


def test_classify_returns_prediction_action_and_version(client, app, artifact) -> None:
    r = client.post("/v1/classify", json={"text": SPAM, "id": "c-1"})
    assert r.status_code == 200
    body = r.get_json()
    assert list(body) == ["id", "label", "confidence", "probabilities", "action", "truncated", "language", "model_version",
                          "policy_version"]
    assert body["policy_version"] == app.extensions["modclf"].policy.sha256[:12]
    assert body["id"] == "c-1"
    assert list(body["probabilities"]) == list(LABELS)
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-9)
    assert body["label"] == max(body["probabilities"], key=body["probabilities"].get)
    assert body["confidence"] == body["probabilities"][body["label"]]
    assert body["model_version"] == app.extensions["modclf"].model_version == artifact.version
    # the numbers are the trained pipeline's, the action the policy's
    expected = artifact.predict_proba([SPAM])[0]
    assert np.allclose([body["probabilities"][label] for label in LABELS], expected, atol=1e-9)
    assert body["action"] == load_policy(DEFAULT_POLICY_PATH).decide(body["probabilities"])


def test_classify_without_id_answers_null_id(client) -> None:
    body = client.post("/v1/classify", json={"text": QUESTION}).get_json()
    assert body["id"] is None and body["label"] in LABELS and body["action"] in ("approve", "review", "reject")


def test_confident_spam_is_rejected_by_the_shipped_policy(client) -> None:
    body = client.post("/v1/classify", json={"text": SPAM}).get_json()
    assert body["label"] == "spam" and body["confidence"] >= 0.8
    assert body["action"] == "reject"


def test_action_comes_from_the_configured_policy_file(model_dir: Path, tmp_path: Path) -> None:
    policy = tmp_path / "strict.yaml"
    policy.write_text("labels:\n  question:\n    - {at_least: 0.0, action: reject}\ndefault: review\n")
    client = make_app(model_dir, policy=str(policy)).test_client()
    question = client.post("/v1/classify", json={"text": QUESTION}).get_json()
    assert question["label"] == "question" and question["action"] == "reject"
    spam = client.post("/v1/classify", json={"text": SPAM}).get_json()
    assert spam["action"] == "review"  # spam has no rule in this policy: the default applies


def test_unpaired_surrogate_in_text_is_classified_not_crashed(client) -> None:
    r = client.post("/v1/classify", data='{"text": "hello \\ud800 world", "id": "\\udfff"}',
                    content_type="application/json")
    assert r.status_code == 200
    assert r.get_json()["id"] == "\ufffd"


def test_explain_reports_exact_contributions(client, artifact) -> None:
    r = client.post("/v1/classify?explain=true", json={"text": QUESTION})
    assert r.status_code == 200
    body = r.get_json()
    exp = body["explanation"]
    assert exp["label"] == body["label"]
    pipeline = artifact.pipeline
    clf = pipeline.named_steps["clf"]
    k = list(clf.classes_).index(body["label"])
    row = pipeline[:-1].transform([QUESTION]).tocsr()
    names = pipeline.named_steps["features"].get_feature_names_out()
    by_name = {names[j]: (v, clf.coef_[k, j]) for j, v in zip(row.indices, row.data)}
    assert len(exp["top_ngrams"]) == 5  # explain_top of this app
    contributions = [g["contribution"] for g in exp["top_ngrams"]]
    assert contributions == sorted(contributions, reverse=True)
    for gram in exp["top_ngrams"]:
        value, coef = by_name[f"{gram['kind']}__{gram['ngram']}"]
        assert gram["tfidf"] == pytest.approx(value, rel=1e-12)
        assert gram["coefficient"] == pytest.approx(coef, rel=1e-12)
        assert gram["contribution"] == pytest.approx(value * coef, rel=1e-12)
    # intercept + every contribution is the model's own logit for the label
    assert exp["logit"] == pytest.approx(pipeline.decision_function([QUESTION])[0, k], abs=1e-9)
    assert exp["intercept"] == pytest.approx(clf.intercept_[k])
    assert "?" in exp["normalized_text"]


def test_explain_false_and_default_have_no_explanation(client) -> None:
    for url in ("/v1/classify", "/v1/classify?explain=false"):
        assert "explanation" not in client.post(url, json={"text": QUESTION}).get_json()


# -- batch ---------------------------------------------------------------------------------------


def test_batch_keeps_input_order_and_ids(client) -> None:
    texts = [SPAM, QUESTION, "You are wrong and the article is propaganda.", "Thank you, great work!", "ok"]
    comments = [{"id": f"id{i}", "text": t} for i, t in enumerate(texts)]
    comments[2].pop("id")
    r = client.post("/v1/classify/batch", json={"comments": comments})
    assert r.status_code == 200
    body = r.get_json()
    assert body["count"] == len(texts) == len(body["results"])
    singles = [client.post("/v1/classify", json={"text": t}).get_json() for t in texts]
    for i, (got, single) in enumerate(zip(body["results"], singles)):
        assert got["id"] == (None if i == 2 else f"id{i}")
        assert got["label"] == single["label"] and got["action"] == single["action"]
        assert got["probabilities"] == pytest.approx(single["probabilities"], abs=1e-12)


def test_batch_explain(client) -> None:
    body = client.post("/v1/classify/batch?explain=true", json={"comments": [{"text": SPAM}, {"text": QUESTION}]}).get_json()
    assert [r["explanation"]["label"] for r in body["results"]] == [r["label"] for r in body["results"]]


def test_explain_is_bounded_per_request(model_dir: Path) -> None:
    """?explain=true costs ~25 us a character in a worker that serves nothing else meanwhile: a request
    asking to explain more than max_explain_chars (each comment counted up to the window) is refused
    with a clear 400 before anything is computed; without explain the same request is answered."""
    client = make_app(model_dir, max_text_chars=2000, max_explain_chars=3000).test_client()
    long = "The council met again about the bridge repairs and the residents spoke. " * 40  # 2,920 chars
    ok = client.post("/v1/classify/batch?explain=true", json={"comments": [{"text": long[:1400]}, {"text": long[:1500]}]})
    assert ok.status_code == 200 and all("explanation" in r for r in ok.get_json()["results"])
    over = [{"text": long[:1400]}, {"text": long[:1700]}]
    body = assert_error(client.post("/v1/classify/batch?explain=true", json={"comments": over}), 400, "explain_too_large")
    assert "3000" in body["message"] and "3100" in body["message"]
    assert client.post("/v1/classify/batch", json={"comments": over}).status_code == 200
    # one comment counts up to the model's window (2,000 here): what is explained of it
    assert client.post("/v1/classify?explain=true", json={"text": long * 3}).status_code == 200


def test_batch_at_the_maximum_is_accepted(client) -> None:
    r = client.post("/v1/classify/batch", json={"comments": [{"text": f"comment {i}"} for i in range(8)]})
    assert r.status_code == 200 and r.get_json()["count"] == 8


# -- model, health, readiness, openapi, metrics --------------------------------------------------


def test_model_endpoint(client, app) -> None:
    body = client.get("/v1/model").get_json()
    state = app.extensions["modclf"]
    assert body["model_version"] == state.model_version
    assert body["labels"] == list(LABELS)
    assert body["thresholds"] == json.loads(json.dumps(state.policy.describe()))
    assert body["thresholds"]["min_confidence"] == 0.4
    assert body["limits"] == {"max_text_chars": 2000, "max_batch": 8, "max_body_bytes": 64 * 1024, "explain_top": 5}
    assert isinstance(body["metrics"], dict) and body["training_rows"] > 0
    assert "/" not in json.dumps(body["thresholds"]["source"])  # no server paths


def test_health_and_readiness(client, app) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").get_json() == {"status": "ready", "model_version": app.extensions["modclf"].model_version}


def test_openapi_document_is_served_with_configured_limits(client) -> None:
    r = client.get("/openapi.json")
    assert r.status_code == 200 and r.mimetype == "application/json"
    doc = r.get_json()
    assert doc["openapi"].startswith("3.")
    assert {"/v1/classify", "/v1/classify/batch", "/v1/model", "/v1/admin/reload", "/healthz", "/readyz",
            "/metrics", "/openapi.json"} <= set(doc["paths"])
    assert "maxLength" not in doc["components"]["schemas"]["CommentText"]  # longer texts: a window, not a 400
    assert {"/v1/feedback", "/v1/feedback/export"} <= set(doc["paths"])  # every /v1/ path, one document
    assert doc["components"]["schemas"]["BatchRequest"]["properties"]["comments"]["maxItems"] == 8
    assert "security" not in doc["paths"]["/v1/classify"]["post"]  # keys off in this app


def test_repository_openapi_file_is_valid_json_with_defaults() -> None:
    from modclf.serving import OPENAPI_PATH
    doc = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))
    assert "maxLength" not in doc["components"]["schemas"]["CommentText"]  # longer texts get a window
    assert doc["components"]["schemas"]["BatchRequest"]["properties"]["comments"]["maxItems"] == Settings.max_batch


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_count_requests_latency_and_predictions(model_dir: Path) -> None:
    client = make_app(model_dir).test_client()
    for _ in range(3):
        client.post("/v1/classify", json={"text": SPAM})
    client.post("/v1/classify/batch", json={"comments": [{"text": QUESTION}, {"text": SPAM}]})
    client.post("/v1/classify", json={"text": ""})
    client.get("/no/such/path")
    r = client.get("/metrics")
    assert r.status_code == 200 and r.mimetype == "text/plain"
    s = _samples(r.get_data(as_text=True))
    ok = (("endpoint", "/v1/classify"), ("method", "POST"), ("status", "200"))
    assert s[("modclf_http_requests_total", ok)] == 3
    assert s[("modclf_http_requests_total", (("endpoint", "/v1/classify"), ("method", "POST"), ("status", "400")))] == 1
    assert s[("modclf_http_requests_total", (("endpoint", "unmatched"), ("method", "GET"), ("status", "404")))] == 1
    assert s[("modclf_http_request_duration_seconds_count", (("endpoint", "/v1/classify"),))] == 4
    assert s[("modclf_http_request_duration_seconds_count", (("endpoint", "/v1/classify/batch"),))] == 1
    assert s[("modclf_predictions_total", (("action", "reject"), ("label", "spam")))] == 4
    assert s[("modclf_predictions_total", (("action", "approve"), ("label", "question")))] == 1


# -- bad input -----------------------------------------------------------------------------------

JSON = "application/json"
BAD_CLASSIFY = [
    # (id, kwargs for client.post, status, code)
    ("text/plain", dict(data='{"text": "hi"}', content_type="text/plain"), 415, "unsupported_media_type"),
    ("form", dict(data={"text": "hi"}), 415, "unsupported_media_type"),
    ("no content type", dict(data='{"text": "hi"}'), 415, "unsupported_media_type"),
    ("latin-1 charset", dict(data='{"text": "hi"}', content_type="application/json; charset=latin-1"), 415, "unsupported_media_type"),
    ("malformed json", dict(data='{"text": "hi"', content_type=JSON), 400, "invalid_json"),
    ("empty body", dict(data="", content_type=JSON), 400, "invalid_json"),
    ("invalid utf-8", dict(data=b'{"text": "caf\xe9"}', content_type=JSON), 400, "invalid_utf8"),
    ("truncated utf-8", dict(data=b'{"text": "\xe2\x82"}', content_type=JSON), 400, "invalid_utf8"),
    ("NaN", dict(data='{"text": NaN}', content_type=JSON), 400, "invalid_json"),
    ("nesting", dict(data="[" * 20_000 + "]" * 20_000, content_type=JSON), 400, "invalid_json"),
    ("huge integer", dict(data='{"text": "a", "id": ' + "9" * 5000 + "}", content_type=JSON), 400, "invalid_json"),
    ("duplicate key", dict(data='{"text": "buy pills at cheap-meds.to", "text": "Thanks"}', content_type=JSON), 400,
     "duplicate_key"),
    ("duplicate nested key", dict(data='{"comments": [{"text": "a", "id": "1", "id": "2"}]}', content_type=JSON), 400,
     "duplicate_key"),
    ("array body", dict(json=[{"text": "hi"}]), 400, "invalid_body"),
    ("string body", dict(json="hi"), 400, "invalid_body"),
    ("null body", dict(data="null", content_type=JSON), 400, "invalid_body"),
    ("missing text", dict(json={"id": "1"}), 400, "missing_field"),
    ("null text", dict(json={"text": None}), 400, "invalid_type"),
    ("number text", dict(json={"text": 42}), 400, "invalid_type"),
    ("list text", dict(json={"text": ["a"]}), 400, "invalid_type"),
    ("object text", dict(json={"text": {"a": 1}}), 400, "invalid_type"),
    ("empty text", dict(json={"text": ""}), 400, "empty_text"),
    ("whitespace text", dict(json={"text": " \t\n\r "}), 400, "empty_text"),
    ("unicode whitespace text", dict(json={"text": "\u3000\u00a0\u2003"}), 400, "empty_text"),
    ("unknown field", dict(json={"text": "hi", "lang": "en"}), 400, "unknown_field"),
    ("unknown field typo", dict(json={"txt": "hi"}), 400, "unknown_field"),
    ("number id", dict(json={"text": "hi", "id": 7}), 400, "invalid_type"),
    ("id too long", dict(json={"text": "hi", "id": "x" * 257}), 400, "invalid_id"),
    ("body too large", dict(data='{"text": "' + "a" * (70 * 1024) + '"}', content_type=JSON), 413, "payload_too_large"),
]


@pytest.mark.parametrize("kwargs,status,code", [c[1:] for c in BAD_CLASSIFY], ids=[c[0] for c in BAD_CLASSIFY])
def test_bad_classify_input_is_a_4xx_json_error(client, kwargs, status, code) -> None:
    assert_error(client.post("/v1/classify", **kwargs), status, code)


def test_error_messages_name_the_problem_not_python(client) -> None:
    r = client.post("/v1/classify", data='{"text": "a", "id": ' + "9" * 5000 + "}", content_type=JSON)
    message = r.get_json()["error"]["message"]
    assert "more than 4300 digits" in message and "sys." not in message
    r = client.post("/v1/classify", data='{"text": "spam", "text": "Thanks"}', content_type=JSON)
    assert "'text' appears twice" in r.get_json()["error"]["message"]


BAD_BATCH = [
    ("comments not a list", {"comments": {"text": "a"}}, "invalid_type"),
    ("comments missing", {}, "missing_field"),
    ("empty batch", {"comments": []}, "empty_batch"),
    ("batch too large", {"comments": [{"text": "a"}] * 9}, "batch_too_large"),
    ("unknown top-level field", {"comments": [{"text": "a"}], "extra": True}, "unknown_field"),
]


@pytest.mark.parametrize("body,code", [c[1:] for c in BAD_BATCH], ids=[c[0] for c in BAD_BATCH])
def test_bad_batch_input_is_a_400_json_error(client, body, code) -> None:
    assert_error(client.post("/v1/classify/batch", json=body), 400, code)


@pytest.mark.parametrize("kwargs,status,code", [
    (dict(data="reload please", content_type="text/plain"), 415, "unsupported_media_type"),
    (dict(data="{", content_type=JSON), 400, "invalid_json"),
    (dict(json=[]), 400, "invalid_body"),
    (dict(json={"model_dir": "/tmp/evil"}), 400, "unknown_field"),
], ids=["text/plain", "malformed", "array", "model_dir is not accepted"])
def test_bad_admin_reload_input(client, kwargs, status, code) -> None:
    assert_error(client.post("/v1/admin/reload", **kwargs), status, code)


BAD_ITEMS = [
    ("item not an object", "just text", "invalid_type", None),
    ("item unknown field", {"text": "a", "score": 1, "id": "u"}, "unknown_field", "u"),
    ("item missing text", {"id": "1"}, "missing_field", "1"),
    ("item empty text", {"text": "   ", "id": "e"}, "empty_text", "e"),
    ("item id not a string", {"text": "a", "id": None}, "invalid_type", None),
    ("item id too long", {"text": "a", "id": "x" * 257}, "invalid_id", None),
]


@pytest.mark.parametrize("item,code,echoed", [c[1:] for c in BAD_ITEMS], ids=[c[0] for c in BAD_ITEMS])
def test_a_bad_batch_item_gets_an_error_and_the_others_their_results(client, item, code, echoed) -> None:
    r = client.post("/v1/classify/batch", json={"comments": [{"id": "a", "text": SPAM}, item, {"text": QUESTION}]})
    assert r.status_code == 200
    body = r.get_json()
    assert body["count"] == 3 and body["errors"] == 1
    first, bad, last = body["results"]
    assert first["id"] == "a" and first["label"] == "spam"
    assert last["id"] is None and last["label"] == "question"
    assert bad == {"id": echoed, "error": {"code": code, "message": bad["error"]["message"]}}
    assert "comments[1]" in bad["error"]["message"]
    single = client.post("/v1/classify", json={"text": QUESTION}).get_json()
    assert last["probabilities"] == pytest.approx(single["probabilities"], abs=1e-12)


def test_a_batch_of_only_bad_items_answers_every_item(client) -> None:
    body = client.post("/v1/classify/batch", json={"comments": [{"text": ""}, {"text": " "}]}).get_json()
    assert body["count"] == 2 and body["errors"] == 2
    assert [r["error"]["code"] for r in body["results"]] == ["empty_text", "empty_text"]


def test_explain_spans_are_words_of_the_original_text_and_sum_to_the_logit(client, artifact) -> None:
    text = "This is simply FALSE, read the article again!! <b>Really</b>"
    body = client.post("/v1/classify?explain=true", json={"text": text}).get_json()
    exp = body["explanation"]
    spans = exp["spans"]
    assert [s["text"] for s in spans] == ["This", "is", "simply", "FALSE,", "read", "the", "article", "again!!",
                                          "<b>Really</b>"]
    for span in spans:
        assert text[span["start"]:span["end"]] == span["text"]
    total = exp["intercept"] + sum(s["contribution"] for s in spans) + sum(u["contribution"] for u in exp["unplaced"])
    assert total == pytest.approx(exp["logit"], abs=1e-9)
    k = list(artifact.pipeline.named_steps["clf"].classes_).index(body["label"])
    assert exp["logit"] == pytest.approx(artifact.pipeline.decision_function([text])[0, k], abs=1e-9)
    assert len(exp["top_ngrams"]) == 5  # the raw n-grams are still there
    batch = client.post("/v1/classify/batch?explain=true", json={"comments": [{"text": text}, {"text": ""}]}).get_json()
    assert batch["results"][0]["explanation"]["spans"] == spans and "error" in batch["results"][1]


def test_chunked_body_above_the_cap_is_413(client) -> None:
    big = b'{"text": "' + b"a" * (100 * 1024) + b'"}'
    r = client.post("/v1/classify", input_stream=io.BytesIO(big), content_type=JSON,
                    headers={"Transfer-Encoding": "chunked"}, environ_overrides={"wsgi.input_terminated": True})
    assert_error(r, 413, "payload_too_large")


@pytest.mark.parametrize("query,code", [("explain=yes", "invalid_query"), ("explain=1", "invalid_query"),
                                        ("explain=true&explain=false", "invalid_query"), ("verbose=true", "invalid_query")])
def test_bad_query_parameters_are_400(client, query, code) -> None:
    assert_error(client.post(f"/v1/classify?{query}", json={"text": "hi"}), 400, code)


@pytest.mark.parametrize("method,path", [("GET", "/v1/classify"), ("PUT", "/v1/classify"), ("DELETE", "/v1/classify/batch"),
                                         ("POST", "/v1/model"), ("POST", "/healthz"), ("GET", "/v1/admin/reload"),
                                         ("PATCH", "/metrics")])
def test_wrong_method_is_405_with_allow_header(client, method, path) -> None:
    r = client.open(path, method=method)
    assert_error(r, 405, "method_not_allowed")
    assert r.headers["Allow"]


@pytest.mark.parametrize("path", ["/", "/v1", "/v1/classify/", "/v2/classify", "/v1/classify/batch/1", "/%ff%fe", "/admin"])
def test_unknown_path_is_404(client, path) -> None:
    assert_error(client.get(path), 404, "not_found")
    assert_error(client.post(path, json={"text": "hi"}), 404, "not_found")


def test_unexpected_exception_is_a_generic_500_without_details(model_dir: Path, caplog) -> None:
    app = make_app(model_dir)
    client = app.test_client()
    with mock.patch.object(type(app.extensions["modclf"]), "classify", side_effect=RuntimeError("secret internals")):
        r = client.post("/v1/classify", json={"text": "hi"})
    err = assert_error(r, 500, "internal_error")
    assert "secret" not in r.get_data(as_text=True)
    assert err["message"] == "internal error"
    assert any("secret internals" in (rec.exc_text or "") or rec.exc_info for rec in caplog.records)


# -- auth ----------------------------------------------------------------------------------------

KEY, ADMIN_KEY = "k" * 32, "a" * 32


@pytest.fixture(scope="module")
def keyed(model_dir: Path):
    return make_app(model_dir, api_keys=f"{KEY}, other-key-0123456789", admin_api_keys=[ADMIN_KEY]).test_client()


def test_api_keys_required_when_configured(keyed) -> None:
    r = keyed.post("/v1/classify", json={"text": "hi"})
    assert_error(r, 401, "unauthorized")
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert_error(keyed.post("/v1/classify", json={"text": "hi"}, headers={"Authorization": "Bearer wrong"}), 401, "unauthorized")
    assert_error(keyed.post("/v1/classify", json={"text": "hi"}, headers={"Authorization": f"Basic {KEY}"}), 401, "unauthorized")
    assert_error(keyed.get("/v1/model"), 401, "unauthorized")
    ok = keyed.post("/v1/classify", json={"text": "hi"}, headers={"Authorization": f"Bearer {KEY}"})
    assert ok.status_code == 200
    assert keyed.get("/v1/model", headers={"Authorization": "bearer other-key-0123456789"}).status_code == 200


def test_admin_needs_an_admin_key(keyed) -> None:
    assert_error(keyed.post("/v1/admin/reload", headers={"Authorization": f"Bearer {KEY}"}), 401, "unauthorized")
    r = keyed.post("/v1/admin/reload", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert r.status_code == 200


def test_probes_metrics_and_openapi_stay_open_with_keys(keyed) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert keyed.get(path).status_code == 200, path
    doc = keyed.get("/openapi.json").get_json()
    assert doc["paths"]["/v1/classify"]["post"]["security"] == [{"bearerAuth": []}]
    assert "security" not in doc["paths"]["/healthz"]["get"]


# -- admin reload ----------------------------------------------------------------------------------


def copy_model(src: Path, dst: Path, version: str) -> Path:
    """A copy of a model directory announcing another version (same weights, valid sha256)."""
    shutil.copytree(src, dst)
    meta = json.loads((dst / "model.json").read_text())
    meta["model_version"] = version
    (dst / "model.json").write_text(json.dumps(meta))
    return dst


def test_admin_reload_swaps_model_and_policy(model_dir: Path, tmp_path: Path) -> None:
    live = copy_model(model_dir, tmp_path / "model", "v-one")
    policy = tmp_path / "policy.yaml"
    shutil.copy(DEFAULT_POLICY_PATH, policy)
    client = make_app(live, policy=str(policy)).test_client()
    assert client.post("/v1/classify", json={"text": SPAM}).get_json()["action"] == "reject"
    meta = json.loads((live / "model.json").read_text())
    meta["model_version"] = "v-two"
    (live / "model.json").write_text(json.dumps(meta))
    policy.write_text("labels:\n  spam:\n    - {at_least: 0.0, action: review}\n")
    r = client.post("/v1/admin/reload")
    assert r.status_code == 200
    assert r.get_json() == {"model_version": "v-two", "previous_version": "v-one",
                            "policy_sha256": r.get_json()["policy_sha256"], "scope": "process"}
    body = client.post("/v1/classify", json={"text": SPAM}).get_json()
    assert body["model_version"] == "v-two" and body["action"] == "review"
    assert client.post("/v1/admin/reload", json={}).status_code == 200
    assert_error(client.post("/v1/admin/reload", json={"model_dir": "/tmp"}), 400, "unknown_field")


def test_admin_reload_of_a_broken_model_keeps_the_old_one(model_dir: Path, tmp_path: Path) -> None:
    live = copy_model(model_dir, tmp_path / "model", "v-good")
    client = make_app(live).test_client()
    with open(live / "model.joblib", "ab") as fh:
        fh.write(b"tampered")
    err = assert_error(client.post("/v1/admin/reload"), 409, "reload_failed")
    assert "sha256" in err["message"] and "v-good" in err["message"]
    assert client.post("/v1/classify", json={"text": "hi"}).get_json()["model_version"] == "v-good"


def test_admin_reload_with_a_broken_policy_changes_nothing(model_dir: Path, tmp_path: Path) -> None:
    live = copy_model(model_dir, tmp_path / "model", "v-a")
    policy = tmp_path / "policy.yaml"
    shutil.copy(DEFAULT_POLICY_PATH, policy)
    client = make_app(live, policy=str(policy)).test_client()
    meta = json.loads((live / "model.json").read_text())
    meta["model_version"] = "v-b"
    (live / "model.json").write_text(json.dumps(meta))
    policy.write_text("labels:\n  spam:\n    - {at_least: 0.9, action: rejekt}\n")
    err = assert_error(client.post("/v1/admin/reload"), 409, "reload_failed")
    assert "rejekt" in err["message"]
    assert client.get("/v1/model").get_json()["model_version"] == "v-a"


# -- start-up refusals, config, integrations -----------------------------------------------------


def test_create_app_refuses_missing_or_tampered_model(model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        make_app(tmp_path / "nothing")
    bad = copy_model(model_dir, tmp_path / "bad", "x")
    (bad / "model.joblib").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="sha256") as exc:
        make_app(bad)
    assert "\n" not in str(exc.value)


def test_create_app_refuses_a_bad_policy(model_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text("labels:\n  spam:\n    - {at_least: 8, action: reject}\n")
    with pytest.raises(PolicyError, match="between 0 and 1"):
        make_app(model_dir, policy=str(bad))


def test_settings_from_environment_file_and_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    env = {"MODCLF_MAX_BATCH": "12", "MODCLF_API_KEYS": "abcdefghijklmnop,qrstuvwxyz0123456", "MODCLF_FEEDBACK_DB": "sqlite://",
           "CORAL_SIGNING_SECRET": "coral-secret-0123456789", "MODCLF_MAX_BACH": "3"}
    settings_file = tmp_path / "modclf.toml"
    settings_file.write_text('max_batch = 99\nexplain_top = 7\nmodel_dir = "/srv/model"\n')
    monkeypatch.chdir(tmp_path)  # ./modclf.toml is read when present
    with caplog.at_level("WARNING"):
        cfg = load_settings({"max_text_chars": 999}, environ=env)
    assert cfg.max_batch == 12 and cfg.max_text_chars == 999  # env > file, flags > everything
    assert cfg.explain_top == 7 and str(cfg.model_dir) == "/srv/model"  # from the file
    assert cfg.api_keys == ("abcdefghijklmnop", "qrstuvwxyz0123456") and cfg.admin_keys == cfg.api_keys
    assert cfg.feedback_db == "sqlite://" and cfg.coral_signing_secret == ("coral-secret-0123456789",)
    assert "abcdefghijklmnop" not in repr(cfg) and "coral-secret" not in repr(cfg)
    assert load_settings({"max_batch": 3}, environ=env).max_batch == 3  # the dict wins over the env
    assert "MODCLF_MAX_BACH (did you mean MODCLF_MAX_BATCH?)" in caplog.text  # reported, not ignored


@pytest.mark.parametrize("env,match", [({"MODCLF_MAX_BATCH": "lots"}, "MODCLF_MAX_BATCH"),
                                       ({"MODCLF_MAX_TEXT_CHARS": "0"}, "between"),
                                       ({"MODCLF_MAX_BODY_BYTES": "true"}, "integer"),
                                       ({"MODCLF_API_KEYS": "short"}, "16 characters"),
                                       ({"MODCLF_API_KEYS": "k\u00e9y-0123456789abcdef"}, "printable ASCII"),
                                       ({"AKISMET_API_KEYS": "abc def"}, "printable ASCII"),
                                       ({"MODCLF_WORKER_CLASS": "eventlet"}, "gevent, sync"),
                                       ({"MODCLF_SETTINGS_FILE": "/nonexistent.toml"}, "not found")])
def test_bad_settings_are_refused_with_one_line(env, match) -> None:
    with pytest.raises(ConfigError, match=match) as exc:
        load_settings(environ=env)
    assert "\n" not in str(exc.value)


def test_unknown_override_is_an_error() -> None:
    with pytest.raises(ConfigError, match="did you mean max_batch"):
        load_settings({"max_btach": 3}, environ={})



def test_state_interface_for_other_blueprints(app) -> None:
    state = app.extensions["modclf"]
    out = state.classify([SPAM, QUESTION])
    assert [set(r) for r in out] == [{"label", "confidence", "probabilities", "action", "truncated", "language", "model_version",
                                      "policy_version"}] * 2
    assert state.classify([]) == []
    assert state.policy.decide(out[0]["probabilities"]) == out[0]["action"]
    with pytest.raises(TypeError):
        state.classify([None])  # type: ignore[list-item]


def test_serving_module_prints_nothing(model_dir: Path, capsys) -> None:
    client = make_app(model_dir).test_client()
    client.post("/v1/classify?explain=true", json={"text": SPAM})
    client.post("/v1/admin/reload")
    assert capsys.readouterr() == ("", "")

