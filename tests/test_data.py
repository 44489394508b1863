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


def test_no_text_from_the_evaluation_sets(corpus: pd.DataFrame) -> None:
    """The corpus is our own writing: nothing in it may match or closely follow ../shared/eval."""
    files = sorted(SHARED_EVAL.glob("*.csv")) if SHARED_EVAL.is_dir() else []
    if not files:
        pytest.skip("../shared/eval not present")
    evaluation = pd.concat([pd.read_csv(f, dtype=str, keep_default_na=False)[["text"]] for f in files])
    eval_texts = evaluation["text"].tolist()
    eval_keys = {wording_key(t) for t in eval_texts}
    exact = corpus[corpus["text"].map(wording_key).isin(eval_keys)]
    assert exact.empty, f"corpus rows equal to evaluation texts: {exact['id'].tolist()[:20]}"
    pairs = near_duplicate_pairs(corpus["text"].tolist(), eval_texts, threshold=0.6, prepare=str.lower)
    # short stock phrases ("Agreed 100%") can resemble each other by chance; wording of 5+ words cannot
    close = sorted({corpus["id"].iat[i] for i, _, _ in pairs if len(corpus["text"].iat[i].split()) >= 5})
    assert not close, f"corpus rows too close to evaluation texts: {close[:20]}"
