"""Near-duplicate detection between comment collections (data hygiene, not prediction)."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from .text import normalize_text


def near_duplicate_pairs(
    texts: Sequence[str],
    others: Sequence[str] | None = None,
    threshold: float = 0.9,
    prepare: Callable[[str], str] = normalize_text,
) -> list[tuple[int, int, float]]:
    """Pairs (i, j, cosine) whose character n-gram TF-IDF cosine is at least ``threshold``.

    With ``others`` the pairs are between ``texts[i]`` and ``others[j]``; without it, between
    distinct items of ``texts`` (i < j). ``prepare`` maps each text before comparison: the
    model's normalization to find rows that teach the model the same thing, or plain lower-casing
    to find rows that share wording (links kept).
    """
    vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True)
    pool = [prepare(t) for t in texts] + [prepare(t) for t in (others or [])]
    m = vec.fit_transform(pool)
    a = m[: len(texts)]
    b = m[len(texts):] if others is not None else a
    sim = (a @ b.T).tocoo()
    keep = sim.data >= threshold
    rows, cols, vals = sim.row[keep], sim.col[keep], sim.data[keep]
    if others is None:
        upper = rows < cols
        rows, cols, vals = rows[upper], cols[upper], vals[upper]
    order = np.argsort(-vals)
    return [(int(rows[k]), int(cols[k]), float(vals[k])) for k in order]
