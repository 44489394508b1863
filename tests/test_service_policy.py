"""The moderation policy: parsing, strict validation, and decisions."""

from __future__ import annotations

from pathlib import Path

import pytest

from modclf.labels import LABELS
from modclf.policy import DEFAULT_POLICY_PATH, Policy, PolicyError, load_policy, parse_policy


def probs(**given: float) -> dict[str, float]:
    return {label: given.get(label, 0.0) for label in LABELS}


@pytest.fixture(scope="module")
def shipped() -> Policy:
    return load_policy(DEFAULT_POLICY_PATH)


def test_shipped_policy_covers_every_label(shipped: Policy) -> None:
    assert set(shipped.rules) == set(LABELS)
    assert shipped.sha256 and len(shipped.sha256) == 64


@pytest.mark.parametrize("p,action", [
    (probs(spam=0.95, other=0.05), "reject"),          # confident spam
    (probs(spam=0.60, other=0.40), "review"),          # probable spam
    (probs(dispute=0.90, other=0.10), "review"),       # disputes always wait for a moderator
    (probs(question=0.90, other=0.10), "approve"),
    (probs(support=0.70, other=0.30), "approve"),
    (probs(other=0.55, spam=0.40, question=0.05), "review"),  # escalated: real chance of spam
    (probs(other=0.38, question=0.32, support=0.30), "review"),  # below min_confidence
])
def test_shipped_policy_decisions(shipped: Policy, p: dict[str, float], action: str) -> None:
    assert shipped.decide(p) == action


def test_thresholds_are_inclusive_and_tried_top_down() -> None:
    policy = parse_policy({"labels": {"spam": [{"at_least": 0.8, "action": "reject"},
                                               {"at_least": 0.5, "action": "review"}]},
                           "default": "approve"})
    assert policy.action_for("spam", 0.8, probs(spam=0.8)) == "reject"
    assert policy.action_for("spam", 0.79, probs(spam=0.79)) == "review"
    assert policy.action_for("spam", 0.49, probs(spam=0.49)) == "approve"  # no rule matched: default
    assert policy.action_for("question", 0.99, probs(question=0.99)) == "approve"  # label without rules


def test_escalation_never_makes_an_action_milder() -> None:
    policy = parse_policy({"labels": {"spam": [{"at_least": 0.0, "action": "reject"}]},
                           "escalate": [{"label": "spam", "at_least": 0.1, "action": "review"}]})
    assert policy.decide(probs(spam=0.9, other=0.1)) == "reject"


def test_ties_follow_label_order() -> None:
    policy = parse_policy({"labels": {"spam": [{"at_least": 0.0, "action": "reject"}],
                                      "other": [{"at_least": 0.0, "action": "approve"}]}})
    assert policy.decide(probs(spam=0.5, other=0.5)) == "reject"


BAD = [
    ("not a mapping", "- a\n- b\n", "must be a mapping"),
    ("unknown top key", "labels: {}\nthreshold: 0.5\n", "unknown key"),
    ("missing labels", "default: review\n", "missing key"),
    ("unknown label", "labels:\n  spamm:\n    - {at_least: 0.5, action: reject}\n", "unknown label 'spamm'"),
    ("unknown action", "labels:\n  spam:\n    - {at_least: 0.5, action: delete}\n", "must be one of"),
    ("threshold above 1", "labels:\n  spam:\n    - {at_least: 80, action: reject}\n", "between 0 and 1"),
    ("threshold not a number", "labels:\n  spam:\n    - {at_least: high, action: reject}\n", "number"),
    ("boolean threshold", "labels:\n  spam:\n    - {at_least: true, action: reject}\n", "number"),
    ("rules out of order", "labels:\n  spam:\n    - {at_least: 0.2, action: review}\n    - {at_least: 0.9, action: reject}\n", "highest"),
    ("rule missing action", "labels:\n  spam:\n    - {at_least: 0.2}\n", "missing key"),
    ("rule extra key", "labels:\n  spam:\n    - {at_least: 0.2, action: review, note: x}\n", "unknown key"),
    ("rules not a list", "labels:\n  spam: reject\n", "list"),
    ("bad min_confidence", "labels: {}\nmin_confidence: -0.1\n", "between 0 and 1"),
    ("bad default", "labels: {}\ndefault: publish\n", "must be one of"),
    ("bad escalate label", "labels: {}\nescalate:\n  - {label: ham, at_least: 0.3, action: review}\n", "unknown label"),
    ("bad version", "version: 2\nlabels: {}\n", "version"),
    ("invalid yaml", "labels: [unclosed\n", "invalid YAML"),
]


@pytest.mark.parametrize("text,match", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_policy_files_are_refused_with_one_line(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError, match=match) as exc:
        load_policy(path)
    assert "\n" not in str(exc.value) and str(path) in str(exc.value)


def test_missing_and_non_utf8_policy_files(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="not found"):
        load_policy(tmp_path / "nope.yaml")
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"labels: {}\n# caf\xe9\n")
    with pytest.raises(PolicyError, match="UTF-8"):
        load_policy(path)


def test_policy_path_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("labels: {}\ndefault: reject\n")
    monkeypatch.setenv("MODCLF_POLICY", str(path))
    assert load_policy().default == "reject"


def test_describe_is_json_ready_and_hides_server_paths(shipped: Policy) -> None:
    import json

    described = json.loads(json.dumps(shipped.describe()))
    assert described["labels"]["spam"][0] == {"at_least": 0.8, "action": "reject"}
    assert described["source"] == "policy.yaml"
