"""Scoring columns of comments: the one place that turns texts into result columns.

Used by batch scoring (``modclf score``, score.py) and the Dask engine. Rows without usable text
are never dropped: they get an empty label, the action ``review`` (a comment nobody could read is
not published unseen) and an ``error`` reason instead.

:func:`score_values` needs no pandas (score.py's worker processes never import it: they start
while the main process imports pandas and reads the input); :func:`score_frame` wraps it.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .labels import LABELS, PROBA_COLUMNS

if TYPE_CHECKING:
    import pandas as pd

    from .moderator import Moderator

RESULT_COLUMNS: tuple[str, ...] = ("label", "confidence", *PROBA_COLUMNS, "action", "truncated", "language",
                                   "policy_version", "error")
#: The action for a row that could not be classified.
UNREADABLE_ACTION = "review"


def text_problem(value: object) -> str | None:
    """Why a value cannot be scored as comment text, or None when it can."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or _is_pandas_na(value):
        return "missing text"
    if not isinstance(value, str):
        return f"text is not a string ({type(value).__name__})"
    if not value.strip():
        return "empty text"
    return None


def _is_pandas_na(value: object) -> bool:
    pd = sys.modules.get("pandas")  # a value can only be pd.NA when pandas is loaded
    return pd is not None and value is pd.NA


def score_values(moderator: "Moderator", values: Sequence[object]) -> dict[str, np.ndarray]:
    """Score raw values; one entry per name of RESULT_COLUMNS, each an array of one value per
    input value, in order."""
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
    known = np.where(ok[:, None], proba, 0.0)
    best = known.argmax(axis=1)
    label[ok] = np.asarray(LABELS, dtype=object)[best[ok]]
    out: dict[str, np.ndarray] = {"label": label, "confidence": np.where(ok, known.max(axis=1), np.nan)}
    for i, col in enumerate(PROBA_COLUMNS):
        out[col] = proba[:, i]
    out["action"] = actions
    out["truncated"] = truncated
    out["language"] = languages
    out["policy_version"] = np.full(n, moderator.policy_version, dtype=object)
    out["error"] = np.array([e or "" for e in errors], dtype=object)
    return out


def result_frame(columns: dict[str, np.ndarray], index: "pd.Index | None" = None, prefix: str = "") -> "pd.DataFrame":
    """The result columns of :func:`score_values` as a DataFrame (names optionally prefixed)."""
    import pandas as pd

    return pd.DataFrame({prefix + c: columns[c] for c in RESULT_COLUMNS}, index=index)


def score_texts(moderator: "Moderator", values: Sequence[object]) -> "pd.DataFrame":
    """Score raw values; returns one result row per input value, in order."""
    return result_frame(score_values(moderator, values))


def score_frame(moderator: "Moderator", df: "pd.DataFrame", text_column: str = "text", prefix: str = "") -> "pd.DataFrame":
    """Return ``df`` with the result columns (optionally prefixed) appended; index and order kept."""
    import pandas as pd

    result = result_frame(score_values(moderator, df[text_column].tolist()), df.index, prefix)
    return pd.concat([df, result], axis=1)
