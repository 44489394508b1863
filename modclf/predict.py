"""Prediction on frames of comments: the one place that turns texts into labels + probabilities.

Used by the batch scorer and the service. Rows without usable text are never dropped: they get an
empty label and an ``error`` reason instead.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np
import pandas as pd

from .labels import LABELS, PROBA_COLUMNS

RESULT_COLUMNS: tuple[str, ...] = ("label", "confidence", *PROBA_COLUMNS, "error")


class Predictor(Protocol):
    """Anything that maps texts to probabilities in LABELS order (the sklearn or the fast path)."""

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray: ...


def text_problem(value: object) -> str | None:
    """Why a value cannot be scored as comment text, or None when it can."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return "missing text"
    if not isinstance(value, str):
        return f"text is not a string ({type(value).__name__})"
    if not value.strip():
        return "empty text"
    return None


def score_texts(predictor: Predictor, values: Sequence[object]) -> pd.DataFrame:
    """Score raw values; returns one result row per input value, in order."""
    n = len(values)
    errors = [text_problem(v) for v in values]
    ok = np.fromiter((e is None for e in errors), dtype=bool, count=n)
    proba = np.full((n, len(LABELS)), np.nan)
    if ok.any():
        proba[ok] = predictor.predict_proba([v for v, good in zip(values, ok) if good])
    label = np.full(n, "", dtype=object)
    best = np.nanargmax(np.where(ok[:, None], proba, 0.0), axis=1)
    label[ok] = np.asarray(LABELS, dtype=object)[best[ok]]
    out = pd.DataFrame({"label": label, "confidence": np.where(ok, np.nanmax(np.where(ok[:, None], proba, 0.0), axis=1), np.nan)})
    for i, col in enumerate(PROBA_COLUMNS):
        out[col] = proba[:, i]
    out["error"] = pd.Series([e or "" for e in errors], dtype=object)
    return out


def score_frame(predictor: Predictor, df: pd.DataFrame, text_column: str = "text", prefix: str = "") -> pd.DataFrame:
    """Return ``df`` with the result columns (optionally prefixed) appended; index and order kept."""
    result = score_texts(predictor, df[text_column].tolist())
    result.index = df.index
    result.columns = [prefix + c for c in result.columns]
    return pd.concat([df, result], axis=1)
