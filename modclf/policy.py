"""The moderation policy: turns a prediction into approve / review / reject.

The policy is data, not code: it lives in ``modclf/policy.yaml`` (shipped with the package; the file
documents the rules in its header), so moderators can tune thresholds without retraining or
redeploying. This module parses and validates that file strictly, because a typo in a policy
(``rejct``, a threshold of ``8`` instead of ``0.8``) silently publishing spam is worse than a
service that refuses to start with a one-line reason.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from .errors import PolicyError
from .labels import LABELS

log = logging.getLogger(__name__)

#: Possible actions, mildest first (escalation only ever moves right).
ACTIONS: tuple[str, ...] = ("approve", "review", "reject")
_SEVERITY = {action: i for i, action in enumerate(ACTIONS)}

#: The policy shipped inside the package (package data): the default when no other is configured.
DEFAULT_POLICY_PATH = Path(__file__).resolve().parent / "policy.yaml"
POLICY_ENV = "MODCLF_POLICY"

_TOP_KEYS = {"version", "min_confidence", "below_min_confidence", "default", "labels", "escalate", "floors",
             "languages"}

#: Conditions under which the model's opinion is not enough, with the least strict action each gets
#: when the policy file does not name it: a comment the model could not read whole (``truncated``:
#: longer than its window) is never auto-approved, even by a policy written before the rule existed.
FLOOR_CONDITIONS: dict[str, str] = {"truncated": "review", "unsupported_language": "review"}


@dataclass(frozen=True)
class Rule:
    """``action`` applies when the top label's confidence is at least ``at_least``."""

    at_least: float
    action: str


@dataclass(frozen=True)
class Escalation:
    """Make the action at least ``action`` when p(``label``) >= ``at_least``, whatever the top label."""

    label: str
    at_least: float
    action: str


@dataclass(frozen=True)
class Policy:
    """A validated policy. Immutable, so a reload swaps the whole object atomically."""

    min_confidence: float = 0.0
    below_min_confidence: str = "review"
    default: str = "review"
    rules: Mapping[str, tuple[Rule, ...]] = field(default_factory=dict)
    escalations: tuple[Escalation, ...] = ()
    #: condition -> least strict action for a comment under that condition (see FLOOR_CONDITIONS)
    floors: Mapping[str, str] = field(default_factory=lambda: dict(FLOOR_CONDITIONS))
    #: languages (ISO 639-1) whose comments may be auto-approved, when the model was also trained on
    #: them; None = every language the model was trained on. Others get the unsupported_language floor.
    languages: tuple[str, ...] | None = None
    source: str | None = None
    sha256: str | None = None

    def action_for(self, label: str, confidence: float, probabilities: Mapping[str, float],
                   conditions: Iterable[str] = ()) -> str:
        """The action for a prediction whose top label is ``label`` with probability ``confidence``.

        ``conditions`` names what was special about the comment (``"truncated"``); each can only make
        the action stricter, through :attr:`floors`.
        """
        if confidence < self.min_confidence:
            action = self.below_min_confidence
        else:
            action = self.default
            for rule in self.rules.get(label, ()):
                if confidence >= rule.at_least:
                    action = rule.action
                    break
        for esc in self.escalations:
            if probabilities.get(esc.label, 0.0) >= esc.at_least and _SEVERITY[esc.action] > _SEVERITY[action]:
                action = esc.action
        for condition in conditions:
            floor = self.floors[condition]  # KeyError: a caller passed a condition nobody defined
            if _SEVERITY[floor] > _SEVERITY[action]:
                action = floor
        return action

    def decide(self, probabilities: Mapping[str, float]) -> str:
        """The action for a full probability mapping (top label = highest p, ties in LABELS order)."""
        label = max(LABELS, key=lambda name: (probabilities.get(name, 0.0), -LABELS.index(name)))
        return self.action_for(label, probabilities.get(label, 0.0), probabilities)

    def describe(self) -> dict[str, Any]:
        """JSON-ready form, as published by ``GET /v1/model`` under ``thresholds``."""
        return {
            "min_confidence": self.min_confidence,
            "below_min_confidence": self.below_min_confidence,
            "default": self.default,
            "labels": {
                label: [{"at_least": r.at_least, "action": r.action} for r in self.rules.get(label, ())]
                for label in LABELS
            },
            "escalate": [{"label": e.label, "at_least": e.at_least, "action": e.action} for e in self.escalations],
            "floors": dict(self.floors),
            "languages": list(self.languages) if self.languages is not None else None,
            "source": Path(self.source).name if self.source else None,
            "sha256": self.sha256,
        }


def _probability(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise PolicyError(f"{where}: must be a number between 0 and 1, got {value!r}")
    if not 0.0 <= float(value) <= 1.0:
        raise PolicyError(f"{where}: must be between 0 and 1, got {value!r}")
    return float(value)


def _action(value: object, where: str) -> str:
    if value not in ACTIONS:
        raise PolicyError(f"{where}: must be one of {', '.join(ACTIONS)}, got {value!r}")
    return str(value)


def _mapping(value: object, where: str, allowed: set[str], required: set[str]) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise PolicyError(f"{where}: must be a mapping, got {type(value).__name__}")
    unknown = sorted(str(k) for k in value if k not in allowed)
    if unknown:
        raise PolicyError(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")
    missing = sorted(required - set(value))
    if missing:
        raise PolicyError(f"{where}: missing key(s) {', '.join(missing)}")
    return value


def parse_policy(obj: object, source: str | None = None, sha256: str | None = None) -> Policy:
    """Validate a parsed policy document (see policy.yaml for the format)."""
    where = source or "policy"
    doc = _mapping(obj, where, _TOP_KEYS, {"labels"})
    if doc.get("version", 1) != 1:
        raise PolicyError(f"{where}: version: only version 1 is supported, got {doc.get('version')!r}")
    rules: dict[str, tuple[Rule, ...]] = {}
    labels = doc["labels"]
    if not isinstance(labels, dict):
        raise PolicyError(f"{where}: labels: must be a mapping of label -> list of rules")
    for label, items in labels.items():
        if label not in LABELS:
            raise PolicyError(f"{where}: labels: unknown label {label!r} (labels: {', '.join(LABELS)})")
        if not isinstance(items, list):
            raise PolicyError(f"{where}: labels.{label}: must be a list of {{at_least, action}} rules")
        parsed = []
        for i, item in enumerate(items):
            w = f"{where}: labels.{label}[{i}]"
            item = _mapping(item, w, {"at_least", "action"}, {"at_least", "action"})
            parsed.append(Rule(_probability(item["at_least"], f"{w}.at_least"), _action(item["action"], f"{w}.action")))
        thresholds = [r.at_least for r in parsed]
        if thresholds != sorted(thresholds, reverse=True):
            raise PolicyError(f"{where}: labels.{label}: rules must be listed from highest at_least to lowest")
        rules[label] = tuple(parsed)
    escalations = []
    raw_esc = doc.get("escalate") or []
    if not isinstance(raw_esc, list):
        raise PolicyError(f"{where}: escalate: must be a list of {{label, at_least, action}} entries")
    for i, item in enumerate(raw_esc):
        w = f"{where}: escalate[{i}]"
        item = _mapping(item, w, {"label", "at_least", "action"}, {"label", "at_least", "action"})
        if item["label"] not in LABELS:
            raise PolicyError(f"{w}.label: unknown label {item['label']!r} (labels: {', '.join(LABELS)})")
        escalations.append(Escalation(item["label"], _probability(item["at_least"], f"{w}.at_least"),
                                      _action(item["action"], f"{w}.action")))
    floors = dict(FLOOR_CONDITIONS)
    raw_floors = doc.get("floors") or {}
    if not isinstance(raw_floors, dict):
        raise PolicyError(f"{where}: floors: must be a mapping of condition -> action")
    for condition, action in raw_floors.items():
        if condition not in FLOOR_CONDITIONS:
            raise PolicyError(f"{where}: floors: unknown condition {condition!r} "
                              f"(conditions: {', '.join(FLOOR_CONDITIONS)})")
        floors[condition] = _action(action, f"{where}: floors.{condition}")
    languages = doc.get("languages")
    if languages is not None:
        if not isinstance(languages, list) or not all(isinstance(x, str) and len(x) == 2 and x.isalpha() and x.islower()
                                                      for x in languages):
            raise PolicyError(f"{where}: languages: must be a list of two-letter ISO 639-1 codes, e.g. [en, fr]")
        languages = tuple(languages)
    return Policy(
        languages=languages,
        floors=floors,
        min_confidence=_probability(doc.get("min_confidence", 0.0), f"{where}: min_confidence"),
        below_min_confidence=_action(doc.get("below_min_confidence", "review"), f"{where}: below_min_confidence"),
        default=_action(doc.get("default", "review"), f"{where}: default"),
        rules=rules,
        escalations=tuple(escalations),
        source=source,
        sha256=sha256,
    )


def default_policy_path() -> Path:
    """``$MODCLF_POLICY`` when set, else the policy shipped with the package."""
    return Path(os.environ.get(POLICY_ENV) or DEFAULT_POLICY_PATH)


def load_policy(path: str | Path | None = None) -> Policy:
    """Read and validate a policy file. Raises :class:`PolicyError` with a one-line reason."""
    path = Path(path) if path is not None else default_policy_path()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise PolicyError(f"{path}: policy file not found") from None
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read policy file: {exc.strerror or exc}") from None
    try:
        obj = yaml.safe_load(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise PolicyError(f"{path}: policy file is not UTF-8 text") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise PolicyError(f"{path}: invalid YAML{at}: {getattr(exc, 'problem', None) or exc}") from None
    policy = parse_policy(obj, source=str(path), sha256=hashlib.sha256(raw).hexdigest())
    log.info("loaded moderation policy %s (sha256 %s)", path, policy.sha256[:12] if policy.sha256 else "-")
    return policy

