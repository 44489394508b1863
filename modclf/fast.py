"""Fast inference for the trained TF-IDF + LogisticRegression pipeline.

scikit-learn extracts n-grams with Python loops, one n-gram at a time, then builds a sparse matrix
and multiplies it. For a fitted linear model all of that collapses into table lookups:

- character n-grams (``char_wb``) are produced for a whole batch at once with NumPy: the batch is
  laid out as one array of code points, every window of length n inside a padded word is hashed
  with a vectorized polynomial hash, and hashes are looked up in a sorted table of the vocabulary;
- word unigrams/bigrams come from one regex pass per comment; token ids are looked up in a pandas
  hash index and bigrams as (id, id) pairs in a sorted table;
- per-feature weights ``idf * coef`` are precomputed, so each comment's logits are the sparse
  product of its sublinear term counts with that table, divided by the TF-IDF norm.

The result is the same computation as ``pipeline.predict_proba`` in float64 (tests check identical
labels and probabilities within 1e-6). The only approximation is the 64-bit hash of character
n-grams: an unseen n-gram could in principle hash to a vocabulary entry (about 1 in 10^13 per
n-gram for our vocabulary size); collisions inside the vocabulary are ruled out when the table is
built.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import Pipeline

from .features import TextNormalizer
from .labels import LABELS
from .text import normalize_text

_MULT = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit multiplier (golden ratio), arithmetic mod 2**64
_SEED = np.uint64(0x84222325CBF29CE4)


def _len_salt(n: int) -> np.uint64:
    return np.uint64((n * 0xC2B2AE3D27D4EB4F) & 0xFFFFFFFFFFFFFFFF)


def _hash_strings(strings: Sequence[str]) -> np.ndarray:
    """The same hash as the vectorized path, for the vocabulary (built once per model load)."""
    mult, seed, mask = int(_MULT), int(_SEED), (1 << 64) - 1
    out = np.empty(len(strings), dtype=np.uint64)
    for i, s in enumerate(strings):
        h = seed
        for ch in s:
            h = ((h * mult) & mask) ^ ord(ch)
            h ^= h >> 29
        out[i] = h ^ int(_len_salt(len(s)))
    return out


class _HashTable:
    """Open-addressing (linear probing) table from 64-bit keys to feature indices, probed in bulk.

    One or two random reads per lookup instead of a binary search's twenty.
    """

    def __init__(self, keys: np.ndarray, values: np.ndarray):
        size = 1 << max(4, int(np.ceil(np.log2(max(len(keys), 1) * 4))))  # load factor <= 0.25
        self.mask = np.uint64(size - 1)
        self.keys = np.zeros(size, dtype=np.uint64)
        self.values = np.full(size, -1, dtype=np.int64)
        for k, v in zip(keys.tolist(), values.tolist()):  # built once per model load
            slot = (k ^ (k >> 32)) & (size - 1)
            while self.values[slot] != -1:
                slot = (slot + 1) & (size - 1)
            self.keys[slot], self.values[slot] = k, v

    def lookup(self, h: np.ndarray) -> np.ndarray:
        """Feature index for each key, -1 when absent."""
        out = np.full(len(h), -1, dtype=np.int64)
        slot = (h ^ (h >> np.uint64(32))) & self.mask
        todo = np.arange(len(h))
        while len(todo):
            v = self.values[slot]
            found = (self.keys[slot] == h[todo]) & (v != -1)
            out[todo[found]] = v[found]
            more = ~found & (v != -1)  # occupied by another key: probe the next slot
            todo, slot = todo[more], (slot[more] + np.uint64(1)) & self.mask
        return out


class _CharTable:
    """Vectorized ``char_wb`` n-gram counting against a fitted vocabulary."""

    def __init__(self, vec: TfidfVectorizer):
        min_n, max_n = vec.ngram_range
        if vec.analyzer != "char_wb" or min_n > 3 or vec.lowercase or vec.strip_accents or vec.preprocessor:
            raise ValueError("fast path supports char_wb vectorizers with min_n <= 3 and no preprocessing")
        self.min_n, self.max_n = min_n, max_n
        terms = list(vec.vocabulary_)
        keys = _hash_strings(terms)
        if len(np.unique(keys)) != len(keys):
            raise ValueError("hash collision inside the character vocabulary")
        idx = np.fromiter((vec.vocabulary_[t] for t in terms), dtype=np.int64, count=len(terms))
        self.table = _HashTable(keys, idx)
        self.n_features = len(terms)

    def counts(self, docs: Sequence[str]) -> sp.csr_matrix:
        # Pad every word with a space on each side ("a b" -> " a  b "): windows inside one padded
        # word are exactly sklearn's char_wb n-grams once whitespace is single spaces (normalize_text
        # guarantees that).
        padded = ["".join((" ", d.replace(" ", "  "), " ")) if d else "" for d in docs]
        lengths = np.fromiter((len(p) for p in padded), dtype=np.int64, count=len(padded))
        cp = np.frombuffer("".join(padded).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
        doc_of = np.repeat(np.arange(len(docs)), lengths)
        is_space = cp == 32
        # a padded word starts at a space followed by a non-space and ends after the space that
        # follows its last non-space character
        start_flag = np.zeros(len(cp), dtype=bool)
        start_flag[:-1] = is_space[:-1] & ~is_space[1:]
        word_id = np.cumsum(start_flag) - 1
        end_flag = np.zeros(len(cp), dtype=bool)
        end_flag[1:] = is_space[1:] & ~is_space[:-1]
        word_end = np.flatnonzero(end_flag) + 1
        pos = np.flatnonzero(word_id >= 0)
        room = word_end[word_id[pos]] - pos  # characters left in the padded word from each position
        h = np.full(len(pos), _SEED, dtype=np.uint64)
        rows, cols = [], []
        with np.errstate(over="ignore"):
            for n in range(1, self.max_n + 1):
                keep = room >= n
                pos, room, h = pos[keep], room[keep], h[keep]
                # extend each window's hash by one character: hash(s[:n]) from hash(s[:n-1])
                h = (h * _MULT) ^ cp[pos + (n - 1)]
                h ^= h >> np.uint64(29)
                if n < self.min_n:
                    continue
                feat = self.table.lookup(h ^ _len_salt(n))
                hit = feat >= 0
                rows.append(doc_of[pos[hit]])
                cols.append(feat[hit])
        return _count_matrix(rows, cols, len(docs), self.n_features)


class _WordTable:
    """Word unigram/bigram counting against a fitted vocabulary."""

    def __init__(self, vec: TfidfVectorizer):
        if vec.analyzer != "word" or vec.ngram_range[0] != 1 or vec.ngram_range[1] > 2 or vec.lowercase \
                or vec.stop_words or vec.strip_accents or vec.preprocessor or vec.tokenizer:
            raise ValueError("fast path supports word vectorizers with ngram_range (1, 1|2) and no preprocessing")
        self.pattern = re.compile(vec.token_pattern)
        vocab = vec.vocabulary_
        tokens = sorted({part for term in vocab for part in term.split(" ")})
        self.tokens = pd.Index(tokens)
        self.uni = np.array([vocab.get(t, -1) for t in tokens], dtype=np.int64)
        bigrams = [(t, i) for t, i in vocab.items() if " " in t]
        T = np.int64(len(tokens))
        if bigrams:
            a = self.tokens.get_indexer([t.split(" ")[0] for t, _ in bigrams]).astype(np.int64)
            b = self.tokens.get_indexer([t.split(" ")[1] for t, _ in bigrams]).astype(np.int64)
            keys = a * T + b
            order = np.argsort(keys)
            self.bi_keys = keys[order]
            self.bi_index = np.array([i for _, i in bigrams], dtype=np.int64)[order]
        else:
            self.bi_keys = self.bi_index = np.zeros(0, dtype=np.int64)
        self.T = T
        self.n_features = len(vocab)

    def counts(self, docs: Sequence[str]) -> sp.csr_matrix:
        findall = self.pattern.findall
        per_doc = [findall(d) for d in docs]
        n_tok = np.fromiter((len(t) for t in per_doc), dtype=np.int64, count=len(per_doc))
        flat = [t for toks in per_doc for t in toks]
        if not flat:
            return sp.csr_matrix((len(docs), self.n_features))
        tid = self.tokens.get_indexer(flat).astype(np.int64)  # -1 when unknown
        doc_of = np.repeat(np.arange(len(docs)), n_tok)
        rows, cols = [], []
        known = tid >= 0
        uni = np.full(len(tid), -1, dtype=np.int64)
        uni[known] = self.uni[tid[known]]
        rows.append(doc_of[uni >= 0])
        cols.append(uni[uni >= 0])
        if len(self.bi_keys) and len(tid) > 1:
            same_doc = doc_of[:-1] == doc_of[1:]
            both = same_doc & known[:-1] & known[1:]
            keys = tid[:-1][both] * self.T + tid[1:][both]
            at = np.searchsorted(self.bi_keys, keys)
            at[at == len(self.bi_keys)] = 0
            hit = self.bi_keys[at] == keys
            rows.append(doc_of[:-1][both][hit])
            cols.append(self.bi_index[at[hit]])
        return _count_matrix(rows, cols, len(docs), self.n_features)


def _count_matrix(rows: list[np.ndarray], cols: list[np.ndarray], n_docs: int, n_features: int) -> sp.csr_matrix:
    r = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
    m = sp.csr_matrix((np.ones(len(r)), (r, c)), shape=(n_docs, n_features))
    m.sum_duplicates()
    return m


class _Block:
    """One TfidfVectorizer of the FeatureUnion, with idf * coef folded into one weight table."""

    def __init__(self, vec: TfidfVectorizer, coef: np.ndarray):
        if vec.norm != "l2" or not vec.use_idf or vec.binary:
            raise ValueError("fast path supports TF-IDF with l2 norm, idf and non-binary counts")
        self.table = _CharTable(vec) if vec.analyzer == "char_wb" else _WordTable(vec)
        self.sublinear = vec.sublinear_tf
        self.idf = vec.idf_.astype(np.float64)
        self.weights = (self.idf[:, None] * coef.T).astype(np.float64)  # (n_features, n_classes)

    def logits(self, docs: Sequence[str]) -> np.ndarray:
        m = self.table.counts(docs)
        if self.sublinear:
            np.log(m.data, out=m.data)
            m.data += 1.0
        # the l2 norm of the tf-idf row, computed without materializing the tf-idf matrix
        sq = m.copy()
        sq.data = (m.data * self.idf[m.indices]) ** 2
        norm = np.sqrt(np.asarray(sq.sum(axis=1)).ravel())
        norm[norm == 0] = 1.0
        return np.asarray(m @ self.weights) / norm[:, None]


class FastPredictor:
    """Drop-in replacement for the fitted pipeline's ``predict_proba`` (columns in LABELS order)."""

    def __init__(self, pipeline: Pipeline, version: str = "unknown"):
        steps = dict(pipeline.steps)
        if list(steps) != ["normalize", "features", "clf"] or not isinstance(steps["normalize"], TextNormalizer):
            raise ValueError("fast path expects the pipeline built by modclf.model.build_pipeline")
        clf = steps["clf"]
        order = [list(clf.classes_).index(label) for label in LABELS]
        coef = clf.coef_[order].astype(np.float64)
        self.intercept = clf.intercept_[order].astype(np.float64)
        self.blocks: list[_Block] = []
        offset = 0
        for _, vec in steps["features"].transformer_list:
            n = len(vec.vocabulary_)
            self.blocks.append(_Block(vec, coef[:, offset:offset + n]))
            offset += n
        if offset != coef.shape[1]:
            raise ValueError("feature count does not match the classifier")
        self.version = version
        self.labels = LABELS

    @classmethod
    def from_artifact(cls, artifact: "object") -> "FastPredictor":
        return cls(artifact.pipeline, getattr(artifact, "version", "unknown"))  # type: ignore[attr-defined]

    def decision_function(self, texts: Sequence[str], normalized: bool = False) -> np.ndarray:
        docs = list(texts) if normalized else [normalize_text(t) for t in texts]
        z = np.tile(self.intercept, (len(docs), 1))
        for block in self.blocks:
            z += block.logits(docs)
        return z

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        z = self.decision_function(texts)
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        return z

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.labels, dtype=object)[self.decision_function(texts).argmax(axis=1)]
