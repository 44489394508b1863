"""Scoring frames of comments: the one place that turns a column of texts into result columns.

Used by batch scoring (``modclf score``, score.py) and the Dask engine. Rows without usable text
are never dropped: they get an empty label, the action ``review`` (a comment nobody could read is
not published unseen) and an ``error`` reason instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from .labels import LABELS, PROBA_COLUMNS

if TYPE_CHECKING:
    from .moderator import Moderator

RESULT_COLUMNS: tuple[str, ...] = ("label", "confidence", *PROBA_COLUMNS, "action", "truncated", "language",
                                   "policy_version", "error")
#: The action for a row that could not be classified.
UNREADABLE_ACTION = "review"


def text_problem(value: object) -> str | None:
    """Why a value cannot be scored as comment text, or None when it can."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return "missing text"
    if not isinstance(value, str):
        return f"text is not a string ({type(value).__name__})"
    if not value.strip():
        return "empty text"
    return None


def score_texts(moderator: "Moderator", values: Sequence[object]) -> pd.DataFrame:
    """Score raw values; returns one result row per input value, in order."""
    n = len(values)
    errors = [text_problem(v) for v in values]
    ok = np.fromiter((e is None for e in errors), dtype=bool, count=n)
    proba = np.full((n, len(LABELS)), np.nan)
    truncated = np.zeros(n, dtype=bool)
    languages = np.full(n, "", dtype=object)
    actions = np.full(n, UNREADABLE_ACTION, dtype=object)
    if ok.any():
        prediction = moderator.predict([v for v, g in zip(values, ok) if g])  # type: ignore[misc]
        proba[ok] = prediction.proba
        truncated[ok] = prediction.truncated
        languages[ok] = prediction.languages
        actions[ok] = [v.action for v in moderator.decide(prediction)]
    label = np.full(n, "", dtype=object)
    best = np.nanargmax(np.where(ok[:, None], proba, 0.0), axis=1)
    label[ok] = np.asarray(LABELS, dtype=object)[best[ok]]
    out = pd.DataFrame({"label": label, "confidence": np.where(ok, np.nanmax(np.where(ok[:, None], proba, 0.0), axis=1), np.nan)})
    for i, col in enumerate(PROBA_COLUMNS):
        out[col] = proba[:, i]
    out["action"] = pd.Series(actions, dtype=object)
    out["truncated"] = truncated
    out["language"] = pd.Series(languages, dtype=object)
    out["policy_version"] = moderator.policy_version
    out["error"] = pd.Series([e or "" for e in errors], dtype=object)
    return out


def score_frame(moderator: "Moderator", df: pd.DataFrame, text_column: str = "text", prefix: str = "") -> pd.DataFrame:
    """Return ``df`` with the result columns (optionally prefixed) appended; index and order kept."""
    result = score_texts(moderator, df[text_column].tolist())
    result.index = df.index
    result.columns = [prefix + c for c in result.columns]
    return pd.concat([df, result], axis=1)
