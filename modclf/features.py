"""Feature extraction: the scikit-learn transformers that turn comment text into TF-IDF vectors."""

from __future__ import annotations

from typing import Iterable

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import FeatureUnion

from .text import normalize_text

#: Words, plus "?" and "!" as tokens of their own: punctuation carries questions and cheering.
WORD_TOKEN_PATTERN = r"(?u)\b\w+\b|[?!]"


class TextNormalizer(TransformerMixin, BaseEstimator):
    """Stateless transformer applying :func:`modclf.text.normalize_text` to each document.

    Works inside a :class:`~sklearn.pipeline.Pipeline`; ``fit`` learns nothing.
    """

    def fit(self, X: Iterable[str], y: object = None) -> "TextNormalizer":
        return self

    def transform(self, X: Iterable[str]) -> list[str]:
        return [normalize_text(x) for x in X]

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        return np.asarray(["text"], dtype=object)


def build_features(
    word_ngrams: tuple[int, int] = (1, 2),
    char_ngrams: tuple[int, int] | None = (2, 5),
    min_df: int = 2,
) -> FeatureUnion:
    """TF-IDF over word n-grams, optionally joined with character n-grams within word boundaries.

    Character n-grams make the model robust to typos, stretched words and morphology, which real
    comments are full of.
    """
    parts: list[tuple[str, TfidfVectorizer]] = [
        (
            "word",
            TfidfVectorizer(
                token_pattern=WORD_TOKEN_PATTERN,
                ngram_range=word_ngrams,
                min_df=min_df,
                sublinear_tf=True,
                lowercase=False,
                dtype=np.float64,
            ),
        )
    ]
    if char_ngrams is not None:
        parts.append(
            (
                "char",
                TfidfVectorizer(
                    analyzer="char_wb",
                    ngram_range=char_ngrams,
                    min_df=min_df,
                    sublinear_tf=True,
                    lowercase=False,
                    dtype=np.float64,
                ),
            )
        )
    return FeatureUnion(parts)
