"""The fast inference path must agree with the plain scikit-learn pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline

from modclf import fast as fast_module
from modclf.fast import FastPredictor
from modclf.features import WORD_TOKEN_PATTERN, TextNormalizer
from modclf.labels import LABELS
from modclf.model import ModelArtifact
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


def test_normalized_input_path(artifact, fast: FastPredictor) -> None:
    texts = pd.read_csv(DATA, dtype=str, keep_default_na=False)["text"].tolist()[:300]
    np.testing.assert_allclose(fast.decision_function([normalize_text(t) for t in texts], normalized=True),
                               fast.decision_function(texts), rtol=0, atol=1e-12)


def _small_pipeline(features: FeatureUnion, n: int = 1500) -> ModelArtifact:
    frame = pd.read_csv(DATA, dtype=str, keep_default_na=False).head(n)
    pipe = Pipeline([("normalize", TextNormalizer()), ("features", features),
                     ("clf", LogisticRegression(C=10.0, max_iter=300))])
    pipe.fit(frame["text"].tolist(), frame["label"].tolist())
    assert set(pipe.classes_) == set(LABELS)
    return ModelArtifact(pipeline=pipe)


def _word(**kw) -> TfidfVectorizer:
    return TfidfVectorizer(token_pattern=WORD_TOKEN_PATTERN, ngram_range=(1, 2), sublinear_tf=True, lowercase=False,
                           **kw)


def _char(**kw) -> TfidfVectorizer:
    return TfidfVectorizer(analyzer="char_wb", sublinear_tf=True, lowercase=False, **kw)


HARD = ["", "a", "?! ?!", "aaaa bbbb", "ÉCOLE été 😀", "x" * 3000, "one two three four five six",
        "ｈｔｔｐ://ｗｗｗ.x.ｃｏｍ", "\ud800 surrogate", "word_with_underscore and digits 1234567890"]


@pytest.mark.parametrize("features", [
    # a vocabulary that is not prefix-closed (max_df drops frequent n-grams), n-grams from length 1
    lambda: FeatureUnion([("word", _word(max_df=0.3)), ("char", _char(ngram_range=(1, 4), max_df=0.2))]),
    # words only, unigrams only, raw counts (no sublinear tf)
    lambda: FeatureUnion([("word", TfidfVectorizer(token_pattern=WORD_TOKEN_PATTERN, lowercase=False))]),
    # characters only
    lambda: FeatureUnion([("char", _char(ngram_range=(3, 6), min_df=2))]),
], ids=["not-prefix-closed", "word-only", "char-only"])
def test_identical_for_other_feature_settings(features) -> None:
    small = _small_pipeline(features())
    texts = pd.read_csv(DATA, dtype=str, keep_default_na=False)["text"].tolist()[1500:2500] + HARD
    assert_same(small, FastPredictor.from_artifact(small), texts)


def test_identical_with_hashed_character_keys(artifact, monkeypatch) -> None:
    """Vocabularies with too many distinct characters for exact 64-bit keys use hashed keys."""
    monkeypatch.setattr(fast_module, "_EXACT_KEY_BITS", 0)
    hashed = FastPredictor.from_artifact(artifact)
    assert hashed._char[6] == 0  # bits: hashed mode
    texts = pd.read_csv(DATA, dtype=str, keep_default_na=False)["text"].tolist()[:2000] + HARD
    assert_same(artifact, hashed, texts)


def test_unsupported_pipelines_are_refused() -> None:
    with pytest.raises(ValueError):
        FastPredictor(Pipeline([("clf", LogisticRegression())]))
    small = _small_pipeline(FeatureUnion([("char", TfidfVectorizer(analyzer="char", min_df=2))]), n=300)
    with pytest.raises(ValueError):
        FastPredictor.from_artifact(small)


def test_saved_arrays_give_the_same_numbers(artifact, fast: FastPredictor) -> None:
    """to_arrays / from_arrays (model.fast.npz) restore exactly the tables built from the pipeline."""
    restored = FastPredictor.from_arrays(fast.to_arrays(), "restored")
    texts = pd.read_csv(DATA, dtype=str, keep_default_na=False)["text"].tolist()[:1000] + HARD
    np.testing.assert_array_equal(restored.predict_proba(texts), fast.predict_proba(texts))
    assert_same(artifact, restored, texts)


def test_model_arrays_are_read_only(fast: FastPredictor) -> None:
    arrays = [a for block in (fast._word, fast._char) for a in block if isinstance(a, np.ndarray)]
    assert arrays and not any(a.flags.writeable for a in arrays)


def test_arrays_of_another_layout_are_refused(fast: FastPredictor) -> None:
    arrays = fast.to_arrays()
    with pytest.raises(ValueError, match="layout"):
        FastPredictor.from_arrays({**arrays, "format": np.asarray(fast_module.ARRAYS_FORMAT + 1)})
    with pytest.raises(ValueError, match="lack"):
        FastPredictor.from_arrays({k: v for k, v in arrays.items() if k != "char.rec"})
