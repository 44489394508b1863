"""Fast inference for the trained TF-IDF + LogisticRegression pipeline.

scikit-learn extracts n-grams with Python loops, one n-gram at a time, then builds a sparse matrix
and multiplies it. For a fitted linear model all of that collapses into table lookups, done here by
one compiled kernel per batch (:func:`modclf._kernels.score_batch`):

- each comment goes through :func:`modclf.text.prenormalize` (the regex part of normalization, in
  Python), then the batch becomes one array of code points;
- the kernel finishes normalization, tokenizes words with exact ``\\w`` semantics, forms sklearn's
  ``char_wb`` n-grams, looks every term up in an open-addressing hash table (a hit is confirmed
  against the stored term, so there is no approximation), counts terms per document, applies
  sublinear tf, and adds ``tf * idf * coef / ||tf * idf||`` per block to the logits.

The result is the same computation as ``pipeline.predict_proba`` in float64; only the order of
floating-point additions differs (tests check identical labels and probabilities within 1e-6).

Building the tables from a fitted pipeline takes about a second, and unpickling the pipeline
another; :meth:`FastPredictor.to_arrays` / :meth:`FastPredictor.from_arrays` save and restore the
finished tables (``model.fast.npz`` beside ``model.joblib``, see :mod:`modclf.model`), so a process
that only scores starts without scikit-learn. Every model array is read-only: the kernels never
write them, so threads and forked worker processes share one copy.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np


def _numba_numpy_support_without_scipy_linalg() -> None:
    """Import numba's NumPy support before the first kernel runs, with scipy.linalg masked.

    ``numba.np.arraymath`` probes for a BLAS when it is imported, by importing scipy.linalg (about a
    quarter of a second, a fifth of a batch scorer's start-up), only to decide how its np.correlate
    and np.convolve compute inner products; no kernel here uses them (they fall back to a loop), and
    np.dot and friends still import scipy.linalg when a function that uses them compiles. Nothing
    changes where scipy.linalg or numba's NumPy support is already loaded (e.g. with scikit-learn).
    """
    if "numba.np.arraymath" in sys.modules or "scipy.linalg" in sys.modules:
        return
    blas = "scipy.linalg.cython_blas"
    sys.modules[blas] = None  # type: ignore[assignment]  # makes the probe's import fail at once
    try:
        import numba.np.arraymath  # noqa: F401
    finally:
        if blas in sys.modules and sys.modules[blas] is None:
            del sys.modules[blas]


_numba_numpy_support_without_scipy_linalg()

from . import _kernels as K  # noqa: E402
from .labels import LABELS  # noqa: E402
from .text import char_flags, normalize_text, prenormalize  # noqa: E402

if TYPE_CHECKING:  # scikit-learn is imported only to build the tables from a pipeline
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import Pipeline

log = logging.getLogger(__name__)


#: Character n-grams are keyed exactly when their packed codes fit in this many bits (tests lower it
#: to exercise the hashed keys used for vocabularies with very many distinct characters).
_EXACT_KEY_BITS = 64


#: Character n-grams in the first-probed table: the most frequent ones, ~90% of the n-grams of real
#: text, in 16 bytes x 2 x this = 256 KiB, which stays in a core's L2 cache.
_HOT_TERMS = 8192


def _table_size(n: int) -> int:
    """Power of two with load factor <= 0.5 (short probes; a small table stays in cache)."""
    return 1 << max(4, int(np.ceil(np.log2(max(n, 1) * 2))))


def _by_frequency(vec: TfidfVectorizer) -> tuple[np.ndarray, np.ndarray]:
    """(order, rank): internal ids sorted by document frequency (low idf first), and its inverse.

    Frequent terms then share cache lines in the count and weight arrays, which is most of the
    memory traffic of scoring real text.
    """
    order = np.argsort(np.asarray(vec.idf_), kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return order, rank


def _pool(terms: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Terms as one code-point array plus start offsets and lengths."""
    lengths = np.fromiter(map(len, terms), dtype=np.int64, count=len(terms))
    starts = np.zeros(len(terms), dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    pool = np.frombuffer("".join(terms).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    return pool, starts, lengths


def _check_tfidf(vec: TfidfVectorizer) -> None:
    if vec.norm != "l2" or not vec.use_idf or vec.binary or vec.lowercase or vec.strip_accents \
            or vec.preprocessor is not None or vec.stop_words is not None:
        raise ValueError("fast path supports TF-IDF with l2 norm, idf, counts, and no preprocessing")


def _records(vec: TfidfVectorizer, coef: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Per internal id ``[idf, idf * coef[0], ..., idf * coef[k-1]]``, shape (n_features, 1 + n_classes)."""
    idf = np.asarray(vec.idf_, dtype=np.float64)
    rec = np.column_stack([idf, idf[:, None] * coef.T])
    return np.ascontiguousarray(rec[order], dtype=np.float64)


def _word_block(vec: TfidfVectorizer, coef: np.ndarray) -> tuple:
    """Kernel arguments for a word vectorizer: token table, unigram and bigram feature maps, weights."""
    from .features import WORD_TOKEN_PATTERN

    _check_tfidf(vec)
    if vec.analyzer != "word" or vec.tokenizer is not None or vec.token_pattern != WORD_TOKEN_PATTERN \
            or vec.ngram_range[0] != 1 or vec.ngram_range[1] > 2:
        raise ValueError(f"fast path supports word vectorizers with token_pattern {WORD_TOKEN_PATTERN!r} "
                         "and ngram_range (1, 1) or (1, 2)")
    vocab = vec.vocabulary_
    order, rank = _by_frequency(vec)
    # most frequent first (tokens only in bigrams last), like the feature ids: hot entries share cache lines
    tokens = sorted({part for term in vocab for part in term.split(" ")},
                    key=lambda t: (rank[vocab[t]] if t in vocab else len(rank), t))
    token_id = {t: i for i, t in enumerate(tokens)}
    uni = np.array([rank[vocab[t]] if t in vocab else -1 for t in tokens], dtype=np.int64)
    bigrams = [(term.split(" "), int(rank[f])) for term, f in vocab.items() if " " in term]
    pair_keys = np.array([token_id[a] * len(tokens) + token_id[b] for (a, b), _ in bigrams], dtype=np.uint64)
    pair_feat = np.array([f for _, f in bigrams], dtype=np.int64)
    pool, starts, lengths = _pool(tokens)
    tab = K.build_table(K.hash_terms(pool, starts, lengths), _table_size(len(tokens)))
    return (tab, pool, starts, lengths, uni, K.build_table(pair_keys, _table_size(len(bigrams))), pair_feat,
            len(tokens), bool(vec.sublinear_tf), _records(vec, coef, order))


def _char_block(vec: TfidfVectorizer, coef: np.ndarray) -> tuple:
    """Kernel arguments for a ``char_wb`` vectorizer: n-gram table (term id == internal id), weights.

    When the vocabulary has few enough distinct characters, each gets a code of ``bits`` bits and a
    window's key is its codes packed into 64 bits (exact, no hashing); otherwise ``bits`` is 0 and
    windows are hashed and confirmed against the stored term.
    """
    _check_tfidf(vec)
    min_n, max_n = vec.ngram_range
    if vec.analyzer != "char_wb" or not 1 <= min_n <= 3 or not min_n <= max_n <= 8:
        raise ValueError("fast path supports char_wb character vectorizers with min_n <= 3 and max_n <= 8")
    vocab = vec.vocabulary_
    by_index = sorted(vocab, key=vocab.__getitem__)
    if [vocab[t] for t in by_index] != list(range(len(by_index))):
        raise ValueError("character vocabulary indices are not 0..n-1")
    order, _ = _by_frequency(vec)
    terms = [by_index[f] for f in order]
    closed = all(t[:-1] in vocab for t in terms if len(t) > min_n)
    pool, starts, lengths = _pool(terms)
    alphabet = np.unique(pool)
    bits = max(1, int(len(alphabet)).bit_length())
    if bits * max_n <= _EXACT_KEY_BITS:
        codes = np.zeros(int(alphabet.max()) + 1 if len(alphabet) else 1, dtype=np.int32)
        codes[alphabet] = np.arange(1, len(alphabet) + 1)
        keys = K.code_terms(pool, starts, lengths, codes, bits)
    else:
        bits, codes = 0, np.zeros(1, dtype=np.int32)
        keys = K.hash_terms(pool, starts, lengths)
    hot = min(len(terms), _HOT_TERMS)  # internal ids are in frequency order: the first ones are hot
    return (K.build_table(keys[:hot], _table_size(hot)), K.build_table(keys[hot:], _table_size(len(terms) - hot), hot),
            pool, starts, lengths, codes, bits, closed, int(min_n), int(max_n), bool(vec.sublinear_tf),
            _records(vec, coef, order), *_NO_TOKEN_NGRAMS)


_NO_TOKEN_NGRAMS = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int32))


def _with_token_ngrams(char: tuple, word: tuple) -> tuple:
    """The char block plus, for each word token, its n-grams as a whole word (see K.token_ngrams)."""
    w_pool, w_starts, w_lens = word[1:4]
    if len(w_starts) == 0:
        return char
    return (*char[:12], *K.token_ngrams(w_pool, w_starts, w_lens, char))


def _empty_word_block(n_classes: int) -> tuple:
    empty = np.zeros(0, dtype=np.int64)
    tab = K.build_table(np.zeros(0, dtype=np.uint64), 16)
    return (tab, np.zeros(0, dtype=np.uint32), empty, empty, empty, tab, empty, 0, False, np.zeros((0, n_classes + 1)))


def _empty_char_block(n_classes: int) -> tuple:
    empty = np.zeros(0, dtype=np.int64)
    tab = K.build_table(np.zeros(0, dtype=np.uint64), 16)
    return (tab, tab, np.zeros(0, dtype=np.uint32), empty, empty, np.zeros(1, dtype=np.int32), 1, True, 2, 1, False,
            np.zeros((0, n_classes + 1)), *_NO_TOKEN_NGRAMS)


#: sublinear tf ``1 + log(count)`` for small counts, computed by NumPy exactly as scikit-learn does.
_LOG_TF = np.concatenate([[0.0], 1.0 + np.log(np.arange(1, 256, dtype=np.float64))])
_LOG_TF.setflags(write=False)

#: Texts run through the kernel at construction: compiles (or loads from the cache) every code path
#: before the first real request, and before a server forks its workers.
_WARM_UP = ["", "Warm up: ok?! x", "ÉCOLE été 😀 aaaa  b", "ÉÉÉÉ ÀÀÀÀ ÇÇÇÇ"]

#: Layout of :meth:`FastPredictor.to_arrays`. Bump it whenever the kernels' arguments change
#: meaning: saved arrays of another layout are ignored and rebuilt from the pipeline.
ARRAYS_FORMAT = 1

#: Names of the kernel arguments, in the order of the block tuples (``int``/``bool`` entries are
#: stored as 0-d arrays and restored to Python scalars, so both paths give numba the same types).
_WORD_FIELDS = ("tab", "pool", "starts", "lengths", "uni", "pair_tab", "pair_feat", "n_tok", "sublinear", "rec")
_CHAR_FIELDS = ("hot", "tab", "pool", "starts", "lengths", "codes", "bits", "closed", "min_n", "max_n", "sublinear",
                "rec", "tok_off", "tok_ids")
_SCALARS = {"n_tok": int, "bits": int, "min_n": int, "max_n": int, "sublinear": bool, "closed": bool}


def _frozen(block: tuple) -> tuple:
    """The block with every array read-only (and C-contiguous): one numba signature whether the
    tables were just built or loaded from disk, and no kernel can change a model by accident."""
    out = []
    for item in block:
        if isinstance(item, np.ndarray):
            item = np.ascontiguousarray(item)
            item.setflags(write=False)
        out.append(item)
    return tuple(out)


class FastPredictor:
    """Drop-in replacement for the fitted pipeline's ``predict_proba`` (columns in LABELS order)."""

    def __init__(self, pipeline: Pipeline, version: str = "unknown"):
        from sklearn.feature_extraction.text import TfidfVectorizer

        from .features import TextNormalizer

        steps = dict(pipeline.steps)
        if list(steps) != ["normalize", "features", "clf"] or not isinstance(steps["normalize"], TextNormalizer):
            raise ValueError("fast path expects the pipeline built by modclf.model.build_pipeline")
        clf, union = steps["clf"], steps["features"]
        if getattr(union, "transformer_weights", None):
            raise ValueError("fast path does not support FeatureUnion transformer_weights")
        order = [list(clf.classes_).index(label) for label in LABELS]
        coef = np.asarray(clf.coef_, dtype=np.float64)[order]
        intercept = np.ascontiguousarray(np.asarray(clf.intercept_, dtype=np.float64)[order])
        n_classes = len(LABELS)
        word, char = None, None
        offset = 0
        for _, vec in union.transformer_list:
            if not isinstance(vec, TfidfVectorizer):
                raise ValueError("fast path expects TfidfVectorizer features")
            part = coef[:, offset:offset + len(vec.vocabulary_)]
            offset += len(vec.vocabulary_)
            if vec.analyzer == "word" and word is None:
                word = _word_block(vec, part)
            elif vec.analyzer == "char_wb" and char is None:
                char = _char_block(vec, part)
            else:
                raise ValueError("fast path supports at most one word and one char_wb vectorizer")
        if offset != coef.shape[1]:
            raise ValueError("feature count does not match the classifier")
        word = word if word is not None else _empty_word_block(n_classes)
        char = _with_token_ngrams(char, word) if char is not None else _empty_char_block(n_classes)
        self._setup(intercept, word, char, version)

    def _setup(self, intercept: np.ndarray, word: tuple, char: tuple, version: str) -> None:
        """Install the tables and run every kernel once (compiled or loaded from numba's cache now,
        not on the first request, and before a server or a batch scorer forks its workers)."""
        self.intercept = _frozen((intercept,))[0]
        self._word = _frozen(word)
        self._char = _frozen(char)
        self._flags = char_flags()
        self._free_scratch: list[tuple] = []
        self.version = version
        self.labels = LABELS
        self.predict_proba(_WARM_UP)
        self.decision_function(_WARM_UP)
        normalize_text(_WARM_UP[-1])  # the single-text kernels too (dedup keys, similarity)
        log.debug("fast path ready for model %s", version)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The finished tables as named arrays (no pickle), for :meth:`from_arrays`."""
        out: dict[str, np.ndarray] = {"format": np.asarray(ARRAYS_FORMAT, dtype=np.int64),
                                      "labels": np.asarray(LABELS), "intercept": self.intercept}
        for prefix, fields, block in (("word", _WORD_FIELDS, self._word), ("char", _CHAR_FIELDS, self._char)):
            if len(fields) != len(block):
                raise AssertionError(f"{prefix} block has {len(block)} entries, expected {len(fields)}")
            for name, value in zip(fields, block):
                out[f"{prefix}.{name}"] = np.asarray(value)
        return out

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], version: str = "unknown") -> "FastPredictor":
        """A predictor from :meth:`to_arrays` output; ValueError when they are of another layout."""
        try:
            fmt = int(arrays["format"])
            labels = tuple(str(x) for x in arrays["labels"])
        except (KeyError, TypeError, ValueError):
            raise ValueError("not fast-path arrays (no format or labels)") from None
        if fmt != ARRAYS_FORMAT:
            raise ValueError(f"fast-path arrays of layout {fmt}, this version reads layout {ARRAYS_FORMAT}")
        if labels != LABELS:
            raise ValueError(f"fast-path arrays for labels {labels}, expected {LABELS}")

        def block(prefix: str, fields: tuple[str, ...]) -> tuple:
            items: list[Any] = []
            for name in fields:
                key = f"{prefix}.{name}"
                if key not in arrays:
                    raise ValueError(f"fast-path arrays lack {key!r}")
                value = arrays[key]
                items.append(_SCALARS[name](value) if name in _SCALARS else value)
            return tuple(items)

        self = cls.__new__(cls)
        self._setup(np.asarray(arrays["intercept"], dtype=np.float64), block("word", _WORD_FIELDS),
                    block("char", _CHAR_FIELDS), version)
        return self

    def _take_scratch(self) -> tuple:
        """Kernel work arrays no other call is using (the service scores on several threads at once).

        A free list rather than ``threading.local``: under gevent's monkey-patching a thread-local is
        per greenlet, i.e. per connection, so every request would allocate (and zero) ~1.5 MB anew.
        ``list.pop``/``append`` are atomic, so this needs no lock."""
        try:
            return self._free_scratch.pop()
        except IndexError:
            return K.new_scratch(self._word, self._char)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["_free_scratch"]  # work arrays are not part of the model
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._free_scratch = []

    @classmethod
    def from_artifact(cls, artifact: "object") -> "FastPredictor":
        return cls(artifact.pipeline, getattr(artifact, "version", "unknown"))  # type: ignore[attr-defined]

    def _scores(self, texts: Sequence[str], normalized: bool, proba: bool) -> np.ndarray:
        docs = list(texts) if normalized else list(map(prenormalize, texts))
        lengths = np.fromiter(map(len, docs), dtype=np.int64, count=len(docs))
        cp = np.frombuffer("".join(docs).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        z = np.empty((len(docs), len(self.intercept)), dtype=np.float64)
        scratch = self._take_scratch()
        # the kernel leaves the count arrays zeroed again, so a scratch goes back to the free list
        # only after a call that returned; after an exception it is dropped
        K.score_batch(cp, lengths, self._flags, _LOG_TF, self.intercept, self._word, self._char, scratch, proba, z)
        self._free_scratch.append(scratch)
        return z

    def decision_function(self, texts: Sequence[str], normalized: bool = False) -> np.ndarray:
        """Logits, shape (n, n_classes). ``normalized=True``: texts are already normalize_text output."""
        return self._scores(texts, normalized, proba=False)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return self._scores(texts, normalized=False, proba=True)

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.labels, dtype=object)[self.decision_function(texts).argmax(axis=1)]
