"""The fast inference path must agree with the plain scikit-learn pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modclf.fast import FastPredictor
from modclf.text import normalize_text

from .conftest import DATA


@pytest.fixture(scope="module")
def fast(artifact) -> FastPredictor:
    return FastPredictor.from_artifact(artifact)


def assert_same(artifact, fast: FastPredictor, texts: list[str]) -> None:
    plain = artifact.predict_proba(texts)
    quick = fast.predict_proba(texts)
    assert (plain.argmax(axis=1) == quick.argmax(axis=1)).all()
    assert np.abs(plain - quick).max() <= 1e-6


def test_identical_on_the_real_dev_set(artifact, fast: FastPredictor, real_dev: Path) -> None:
    texts = pd.read_csv(real_dev, dtype=str, keep_default_na=False)["text"].tolist()
    assert len(texts) == 500
    assert_same(artifact, fast, texts)


def test_identical_on_the_corpus(artifact, fast: FastPredictor) -> None:
    assert_same(artifact, fast, pd.read_csv(DATA, dtype=str, keep_default_na=False)["text"].tolist())


@pytest.mark.parametrize("text", ["", " ", "a", "?!", "😀", "x" * 5000, "ab  cd\t\nef", "\ufeff", "ÉCOLE été",
                                  "www dot x dot com", "@a @b", "a\u0300\u0301", "ｈｔｔｐ://ｗｗｗ.x.ｃｏｍ", "\x1c\x1d word"])
def test_identical_on_edge_cases(artifact, fast: FastPredictor, text: str) -> None:
    assert_same(artifact, fast, [text, "ordinary comment about the news", text])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(max_size=300), min_size=1, max_size=8))
def test_identical_on_arbitrary_text(artifact, fast: FastPredictor, texts: list[str]) -> None:
    assert_same(artifact, fast, texts)


@given(st.text(max_size=200))
@settings(max_examples=200, deadline=None)
def test_normalized_text_has_single_spaces(text: str) -> None:
    out = normalize_text(text)
    assert out == " ".join(out.split())
