"""Guards on the shipped corpus data/comments.csv: schema, labels, size, duplicates, provenance."""

from __future__ import annotations

import html
import re

import pandas as pd
import pytest

from modclf.data import read_labeled
from modclf.labels import LABELS
from modclf.similarity import near_duplicate_pairs
from modclf.text import dedup_key


def wording_key(text: str) -> str:
    """Same words in the same order, links included (unlike dedup_key, which masks links)."""
    return re.sub(r"[\W_]+", "", html.unescape(text).lower())

from .conftest import DATA, SHARED_EVAL

TOPICS = {"war", "geopolitics", "politics", "economy", "health", "sports", "music", "video", "tech",
          "entertainment", "science", "local", "religion", "other"}


@pytest.fixture(scope="module")
def corpus() -> pd.DataFrame:
    return read_labeled(DATA)


def test_schema_and_labels(corpus: pd.DataFrame) -> None:
    assert list(corpus.columns) == ["id", "text", "label", "topic", "batch"]
    assert corpus["id"].is_unique
    assert set(corpus["label"]) == set(LABELS)
    assert set(corpus["topic"]) <= TOPICS
    assert (corpus["text"].str.strip() != "").all()
    assert (corpus["text"] == corpus["text"].str.strip()).all(), "texts are stored stripped"


def test_size_and_balance(corpus: pd.DataFrame) -> None:
    assert len(corpus) >= 4000
    counts = corpus["label"].value_counts()
    for label in LABELS:
        assert counts[label] >= 500, f"{label}: only {counts[label]} rows"


def test_length_and_topic_spread(corpus: pd.DataFrame) -> None:
    words = corpus["text"].str.split().str.len()
    assert (words <= 3).mean() > 0.03, "very short comments must be represented"
    assert (words >= 80).mean() > 0.03, "long comments must be represented"
    assert corpus["topic"].value_counts().min() >= 50


def test_no_exact_duplicates(corpus: pd.DataFrame) -> None:
    keys = corpus["text"].map(dedup_key)
    dup = corpus[keys.duplicated(keep=False)]
    assert dup.empty, f"duplicate texts: {dup[['id', 'text']].head(10).to_dict('records')}"


def test_no_near_duplicates(corpus: pd.DataFrame) -> None:
    pairs = near_duplicate_pairs(corpus["text"].tolist(), threshold=0.9)
    shown = [(corpus["id"].iat[i], corpus["id"].iat[j], round(s, 3)) for i, j, s in pairs[:10]]
    assert not pairs, f"near-duplicate rows (id, id, cosine): {shown}"


def _evaluation_texts() -> list[str]:
    files = sorted(SHARED_EVAL.glob("*.csv")) if SHARED_EVAL.is_dir() else []
    if not files:
        pytest.skip("../shared/eval not present")
    return pd.concat([pd.read_csv(f, dtype=str, keep_default_na=False)[["text"]] for f in files])["text"].tolist()


def _assert_none_from_evaluation(rows: pd.DataFrame, what: str, exact_min_words: int = 0) -> None:
    """No row equals an evaluation text (``exact_min_words``: stock replies shorter than this may),
    and no row of 5+ words is close to one: short stock phrases ("Agreed 100%") can resemble each
    other by chance; wording of 5+ words cannot."""
    eval_texts = _evaluation_texts()
    worded = rows["text"].str.split().str.len() >= exact_min_words
    exact = rows[worded & rows["text"].map(wording_key).isin({wording_key(t) for t in eval_texts})]
    assert exact.empty, f"{what} rows equal to evaluation texts: {exact['id'].tolist()[:20]}"
    pairs = near_duplicate_pairs(rows["text"].tolist(), eval_texts, threshold=0.6, prepare=str.lower)
    close = sorted({rows["id"].iat[i] for i, _, _ in pairs if len(rows["text"].iat[i].split()) >= 5})
    assert not close, f"{what} rows too close to evaluation texts: {close[:20]}"


def test_no_text_from_the_evaluation_sets(corpus: pd.DataFrame) -> None:
    """The corpus is our own writing: nothing in it may match or closely follow ../shared/eval."""
    _assert_none_from_evaluation(corpus, "corpus")


HELD_OUT = sorted((DATA.parent / "held_out").glob("*.csv"))


@pytest.mark.parametrize("path", HELD_OUT, ids=[p.name for p in HELD_OUT])
def test_held_out_rounds_are_our_own_writing_and_not_in_training(path, corpus: pd.DataFrame) -> None:
    """Rounds written and kept out of training (see the datasheet) follow the corpus's rules too."""
    rows = read_labeled(path)
    assert list(rows.columns) == ["id", "text", "label", "topic", "batch"]
    assert not set(rows["id"]) & set(corpus["id"])
    assert not set(rows["text"].map(dedup_key)) & set(corpus["text"].map(dedup_key))
    _assert_none_from_evaluation(rows, path.name)


VALIDATION = DATA.parent / "validation.csv"
VALIDATION_SOURCES = {"news-opinion", "news-war", "video", "forum-reply", "news-opinion-long", "natural-thread"}


@pytest.fixture(scope="module")
def validation() -> pd.DataFrame:
    return pd.read_csv(VALIDATION, dtype=str, keep_default_na=False)


def test_validation_schema(validation: pd.DataFrame) -> None:
    """The authored validation set: its own ids, the five labels, a known source for each row
    (what `modclf eval` breaks it down by) and the natural-thread part policy thresholds are chosen on."""
    assert list(validation.columns) == ["id", "text", "label", "topic", "batch", "source", "lang"]
    assert validation["id"].is_unique and validation["id"].str.fullmatch(r"v\d{4}").all()
    assert set(validation["label"]) == set(LABELS)
    assert set(validation["source"]) <= VALIDATION_SOURCES
    assert (validation["text"].str.strip() != "").all()
    natural = validation[validation["source"] == "natural-thread"]
    assert len(natural) >= 600 and (natural["label"] == "dispute").sum() >= 150


def test_validation_is_kept_apart_from_training(corpus: pd.DataFrame, validation: pd.DataFrame) -> None:
    """Never trained on: no validation text of 5+ words equals or nearly equals a training row.
    (Stock replies such as "+1", "Exactly." or "No." occur in any comment section, both files
    included; a model that has seen "+1" is not being tested on memorized wording.)"""
    worded = validation[validation["text"].str.split().str.len() >= 5]
    same = set(worded["text"].map(dedup_key)) & set(corpus["text"].map(dedup_key))
    assert not same, f"validation texts also in the corpus: {sorted(same)[:5]}"
    pairs = near_duplicate_pairs(worded["text"].tolist(), corpus["text"].tolist(), threshold=0.9)
    shown = [(worded["id"].iat[i], corpus["id"].iat[j], round(s, 3)) for i, j, s in pairs[:10]]
    assert not pairs, f"validation rows near training rows (id, id, cosine): {shown}"


def test_no_validation_text_from_the_evaluation_sets(validation: pd.DataFrame) -> None:
    """Written by the project too; stock replies ("No.", "lol") recur in every comment section."""
    _assert_none_from_evaluation(validation, "validation", exact_min_words=5)
