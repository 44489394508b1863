"""Reading and validating labeled comment files.

Every problem is reported with the file, the row and the field it concerns, and all problems of a
file are reported at once, so a bad file is fixed in one pass instead of one error per run.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from .errors import DataError
from .labels import LABELS

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("text", "label")
MAX_REPORTED_PROBLEMS = 20
#: Optional column: how many times a row counts in training (a whole number from 1 to MAX_WEIGHT;
#: empty or no column means 1). Training reads a row of weight k as k copies of it, in document
#: frequencies and in the loss alike, so the corpus can lean on the rows most like real comments
#: (see data/DATASHEET.md) without writing them out several times.
WEIGHT_COLUMN = "weight"
MAX_WEIGHT = 10


def _decode(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{path}: line {line}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "save the file as UTF-8"
        ) from None


def read_labeled(path: str | Path, min_per_label: int = 0) -> pd.DataFrame:
    """Read one labeled CSV (columns ``text,label``; others kept) and validate it.

    Rows are numbered from 1 for the first data row, as a spreadsheet shows them below the header.
    Raises :class:`DataError` on any problem.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson", ".parquet", ".pq"):
        raise DataError(f"{path}: labeled files are CSV (columns text,label); convert this {path.suffix} file to CSV")
    content = _decode(path)
    header = next(csv.reader(io.StringIO(content)), [])
    twice = [c for c in dict.fromkeys(header) if header.count(c) > 1]
    if twice:  # pandas would rename the second one "label.1" and train on a guess
        raise DataError(f"{path}: line 1: column {twice[0]!r} appears more than once")
    try:
        df = pd.read_csv(io.StringIO(content), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{path}: not a readable CSV file: {exc}") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(repr(c) for c in missing)}; "
            f"found {', '.join(repr(c) for c in df.columns) or 'none'}"
        )
    problems: list[str] = []
    for i, (text, label) in enumerate(zip(df["text"], df["label"]), start=1):
        where = f"{path}: row {i}"
        if "id" in df.columns and df["id"].iat[i - 1]:
            where += f" (id={df['id'].iat[i - 1]})"
        if not text.strip():
            problems.append(f"{where}: field 'text': empty text")
        if label not in LABELS:
            problems.append(
                f"{where}: field 'label': unknown label {label!r} (allowed: {', '.join(LABELS)})"
            )
        if WEIGHT_COLUMN in df.columns and _weight(df[WEIGHT_COLUMN].iat[i - 1]) is None:
            problems.append(f"{where}: field {WEIGHT_COLUMN!r}: {df[WEIGHT_COLUMN].iat[i - 1]!r} is not a whole "
                            f"number from 1 to {MAX_WEIGHT} (leave it empty for 1)")
    if problems:
        more = len(problems) - MAX_REPORTED_PROBLEMS
        shown = problems[:MAX_REPORTED_PROBLEMS] + ([f"... and {more} more problem(s)"] if more > 0 else [])
        raise DataError("\n".join(shown))
    if min_per_label:
        check_label_counts(df, min_per_label, str(path))
    log.info("read %d labeled rows from %s", len(df), path)
    return df


def _weight(value: str) -> int | None:
    value = value.strip()
    if not value:
        return 1
    if not value.isascii() or not value.isdigit():
        return None
    return int(value) if 1 <= int(value) <= MAX_WEIGHT else None


def row_weights(df: pd.DataFrame) -> list[int]:
    """The training weight of every row of a frame read by :func:`read_labeled` / :func:`read_many`."""
    if WEIGHT_COLUMN not in df.columns:
        return [1] * len(df)
    return [_weight(v) or 1 for v in df[WEIGHT_COLUMN].fillna("").astype(str)]


def check_label_counts(df: pd.DataFrame, min_per_label: int, source: str) -> None:
    counts = df["label"].value_counts()
    short = [(label, int(counts.get(label, 0))) for label in LABELS if counts.get(label, 0) < min_per_label]
    if short:
        desc = ", ".join(f"'{label}' has {n}" for label, n in short)
        raise DataError(
            f"{source}: field 'label': too few rows per label ({desc}; at least {min_per_label} needed)"
        )


def read_many(paths: Sequence[str | Path], min_per_label: int = 0) -> pd.DataFrame:
    """Read and concatenate several labeled files; label counts are checked on the union."""
    if not paths:
        raise DataError("no data file given")
    frames = [read_labeled(p) for p in paths]
    df = pd.concat(frames, ignore_index=True)
    _warn_conflicting_labels(df, paths)
    if min_per_label:
        check_label_counts(df, min_per_label, ", ".join(str(p) for p in paths))
    return df


def _warn_conflicting_labels(df: pd.DataFrame, paths: Sequence[str | Path]) -> None:
    """Log how many texts (case and spacing ignored) carry more than one label: the model cannot
    learn both, and cross-validation would see the same text on both sides of a split."""
    keys = df["text"].map(lambda t: " ".join(t.casefold().split()))
    labels_per_text = df.groupby(keys, sort=False)["label"].nunique()
    conflicting = labels_per_text[labels_per_text > 1]
    if len(conflicting):
        examples = ", ".join(ascii(k[:60]) for k in conflicting.index[:3])
        log.warning("%s: %d text(s) appear with different labels (e.g. %s); the model learns the majority, "
                    "and files given twice count twice", ", ".join(str(p) for p in paths), len(conflicting), examples)
