"""Memory-lean training: the same fitted Pipeline as ``Pipeline.fit``, without its copies.

``Pipeline.fit`` on the shipped model holds at once a dict of every n-gram of the corpus, each
TF-IDF part's full count matrix (float64, rare terms included), its pruned copy, its TF-IDF copy
and the FeatureUnion's hstack of them (12 bytes a non-zero each), then scipy's L-BFGS-B workspace
of ~25 float64 vectors the size of the coefficients: 15.7 GB for 1M comments of a 14k-comment
vocabulary, more for real archives, whose vocabulary keeps growing. Here:

1. **one counting pass in chunks**: the steps before the features (the normalizer) are applied
   chunk by chunk; each :class:`~sklearn.feature_extraction.text.TfidfVectorizer` of the
   FeatureUnion maps its own analyzer's n-grams to ids (one dict of every n-gram seen, which
   document frequencies need) and keeps per chunk only (row, id, count) as int32 + uint8;
   ``char_wb`` n-grams are computed once per distinct word (they never cross a space); chunks
   beyond ``SPILL_AFTER_BYTES`` wait in a temporary directory (plain ``.npy``), so the counts of
   all rows and the design matrix built from them are never resident together;
2. **the vocabulary** is scikit-learn's rule applied to those counts (``min_df <= df <= max_df``,
   terms sorted) and ``idf_`` is computed with the same operations, so ``vocabulary_`` and ``idf_``
   are identical to what ``fit`` produces;
3. **the design matrix** is kept as what TF-IDF is made of: per non-zero a column id (int32) and
   its count (uint8; larger counts kept exactly on the side), per row and part the norm's scale,
   per column the idf: 5 bytes a non-zero instead of 12 (float64 CSR) or 8 (float32). Values are
   computed in float64 when used: ``TfidfVectorizer.transform``'s to the last bit or two;
4. **the classifier** (multinomial ``LogisticRegression``, lbfgs, L2) minimizes scikit-learn's own
   objective: the HalfMultinomialLoss per sample, sample weights from ``class_weight``, penalty
   ``||W||^2 / (2 C sum(weights))``, and its stopping rule ``max|gradient| <= tol`` (at half the
   tolerance: see ``_TOL_FACTOR``), by L-BFGS with
   10 correction pairs as scipy's, but pairs stored in float32 and no other copies: scipy's
   L-BFGS-B workspace alone would take 1.8 GB for the 1.8M features of 1M comments. The loss and
   gradient are one compiled pass over the compact matrix (float64 sums, no copy of X), on up to
   two threads with results that do not depend on the number of threads.

Other FeatureUnion parts (and TF-IDF parts this module does not reproduce, e.g. a fixed
``vocabulary`` or ``max_features``) are fitted the normal way, ``fit_transform`` on all rows; any
other final estimator (or two classes, or another penalty) is fitted by scikit-learn on the float32
CSR matrix. The result is an ordinary fitted Pipeline of the same steps: inference, explanations and
persistence do not know how it was trained.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import tempfile
import time
import warnings
from array import array
from collections import defaultdict
from numbers import Integral
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import scipy.sparse as sp
from numba import njit, prange
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfTransformer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import column_or_1d

log = logging.getLogger(__name__)

#: Rows analyzed per chunk: the per-chunk temporaries (a few n-gram ids per character) stay ~100 MB.
DEFAULT_CHUNK_ROWS = 20_000

#: Correction pairs kept by L-BFGS (scipy's and so scikit-learn's default).
LBFGS_MEMORY = 10

#: The classifier's fit stops at ``max|gradient| <= tol * _TOL_FACTOR``. Two L-BFGS runs stopped at
#: the same tolerance still end at different points near the optimum (0.004 apart in macro-F1 on
#: the real dev file, for the shipped model on data/comments.csv); stopped nearer, the model is
#: nearer the exact optimum than scikit-learn's own fit at ``tol`` (~20% more iterations).
_TOL_FACTOR = 0.5

#: Count chunks of one vectorizer kept in memory up to this many bytes; beyond it they wait on disk
#: (a temporary directory) until the design matrix is assembled. Kept in memory, the counts of 1M
#: comments (~2.4 GB) and the design matrix being built from them would be resident together.
SPILL_AFTER_BYTES = 128 * 2**20

#: The char_wb word cache is dropped when it holds this many words (bounds its memory on huge inputs).
_WORD_CACHE_LIMIT = 2_000_000

#: Counts up to this are stored as uint8 codes; code 255 marks a larger count, kept on the side.
_MAX_CODE = 254
_OVERFLOW = 255


@functools.lru_cache(maxsize=None)
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:  # pragma: no cover (no C library to load)
        return None


def _release_freed_memory() -> None:
    """Hand memory freed by numpy back to the system (glibc ``malloc_trim``; a no-op elsewhere).

    Arrays of a few MB (the per-chunk counts) come from malloc's heap, not from their own mapping,
    and freed they stay in the process; without this the counts of the first pass would still be
    resident while the design matrix and the solver's vectors are allocated.
    """
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


# --- compiled kernels over the compact matrix ---------------------------------------------------

#: Classes handled per pass over a row's non-zeros (their sums unrolled into registers: a loop over
#: an array of classes is ~1.7x slower); K classes take ceil(K / 5) passes.
_GROUP = 5

#: Row ranges of the loss kernel, each with its own copy of the coefficients and gradient, run on as
#: many threads as there are (numba's, up to this many). Fixed, so that the sums, added in range
#: order, are the same bits whatever the number of threads.
_PARTITIONS = 2


@njit(cache=True, nogil=True, parallel=True)
def _loss_grad(rowptr, indices, codes, rowscale, tf, ov_rowptr, ov_pos, ov_part, ov_tf, p_indptr, p_indices,
               p_data, y, sw, intercept, A, totals, g_intercept):  # pragma: no cover (numba)
    """Per row ``z = X @ W + intercept``, loss ``sw * (logsumexp(z) - z[y])`` and gradient
    ``g = sw * (softmax(z) - onehot(y))`` (scikit-learn's HalfMultinomialLoss); ``X.T @ g`` accumulated.

    Rows are split into ``A.shape[0]`` ranges. For range ``t``, ``A[t, :, :Kp]`` holds the
    coefficients times each column's idf (classes padded with zeros to a multiple of 5) and
    ``A[t, :, Kp:]`` receives the range's ``X.T @ g``, each beside the coefficient it belongs to (a
    row's non-zeros are read for the prediction and again, from cache, for the gradient);
    ``totals[t]`` and ``g_intercept[t]`` receive the range's summed loss and ``sum_i g_i``.
    """
    T = A.shape[0]
    n, P = rowscale.shape
    K = intercept.shape[0]
    Kp = A.shape[2] // 2
    step = (n + T - 1) // T
    for t in prange(T):
        At = A[t]
        z = np.empty(Kp)
        g = np.zeros(Kp)
        gi = np.zeros(K)
        total = 0.0
        for i in range(t * step, min(n, (t + 1) * step)):
            for k in range(Kp):
                z[k] = intercept[k] if k < K else 0.0
            for c in range(0, Kp, 5):
                for part in range(P):
                    tfp = tf[part]
                    a0 = a1 = a2 = a3 = a4 = 0.0
                    for pos in range(rowptr[i, part], rowptr[i, part + 1]):
                        v = tfp[codes[pos]]
                        j = indices[pos]
                        a0 += v * At[j, c]
                        a1 += v * At[j, c + 1]
                        a2 += v * At[j, c + 2]
                        a3 += v * At[j, c + 3]
                        a4 += v * At[j, c + 4]
                    s = rowscale[i, part]
                    z[c] += s * a0
                    z[c + 1] += s * a1
                    z[c + 2] += s * a2
                    z[c + 3] += s * a3
                    z[c + 4] += s * a4
            for q in range(ov_rowptr[i], ov_rowptr[i + 1]):  # counts over 254 (code 255: tf 0 above)
                j = indices[ov_pos[q]]
                v = ov_tf[q] * rowscale[i, ov_part[q]]
                for k in range(K):
                    z[k] += v * At[j, k]
            for pos in range(p_indptr[i], p_indptr[i + 1]):
                j = p_indices[pos]
                for k in range(K):
                    z[k] += p_data[pos] * At[j, k]
            zmax = z[0]
            for k in range(1, K):
                zmax = max(zmax, z[k])
            sum_exps = 0.0
            for k in range(K):
                g[k] = np.exp(z[k] - zmax)
                sum_exps += g[k]
            yi = int(y[i])
            w = sw[i]
            total += w * (np.log(sum_exps) + zmax - z[yi])
            for k in range(K):
                g[k] = w * (g[k] / sum_exps)
            g[yi] -= w
            for k in range(K):
                gi[k] += g[k]
            for c in range(0, Kp, 5):
                for part in range(P):
                    tfp = tf[part]
                    s = rowscale[i, part]
                    h0, h1, h2, h3, h4 = s * g[c], s * g[c + 1], s * g[c + 2], s * g[c + 3], s * g[c + 4]
                    for pos in range(rowptr[i, part], rowptr[i, part + 1]):
                        v = tfp[codes[pos]]
                        j = indices[pos]
                        At[j, Kp + c] += v * h0
                        At[j, Kp + c + 1] += v * h1
                        At[j, Kp + c + 2] += v * h2
                        At[j, Kp + c + 3] += v * h3
                        At[j, Kp + c + 4] += v * h4
            for q in range(ov_rowptr[i], ov_rowptr[i + 1]):
                j = indices[ov_pos[q]]
                v = ov_tf[q] * rowscale[i, ov_part[q]]
                for k in range(K):
                    At[j, Kp + k] += v * g[k]
            for pos in range(p_indptr[i], p_indptr[i + 1]):
                j = p_indices[pos]
                for k in range(K):
                    At[j, Kp + k] += p_data[pos] * g[k]
        totals[t] = total
        for k in range(K):
            g_intercept[t, k] = gi[k]


@njit(cache=True, nogil=True)
def _dot(a, b):  # pragma: no cover (numba)
    """sum(a * b) in float64, a and b of any float type."""
    s = 0.0
    for i in range(a.shape[0]):
        s += np.float64(a[i]) * np.float64(b[i])
    return s


@njit(cache=True, nogil=True)
def _axpy(alpha, a, b):  # pragma: no cover (numba)
    """b += alpha * a (b float64)."""
    for i in range(b.shape[0]):
        b[i] += alpha * np.float64(a[i])


# --- the compact design matrix ------------------------------------------------------------------

class LeanDesign:
    """The FeatureUnion's output for the training rows, compact; its values in float64 when used.

    Columns are held in an internal order (most frequent first, so that the coefficients most rows
    use share cache lines); ``columns[c]`` is the union's column of internal column ``c``. Row ``i``
    holds, for TF-IDF part ``p``, the non-zeros ``rowptr[i, p]:rowptr[i, p + 1]`` with value
    ``tf[p, code] * idf[column] * rowscale[i, p]``; parts fitted the normal way are a float64 CSR
    matrix (``plain``) over the same internal columns.
    """

    def __init__(self, n_rows: int, n_features: int, n_parts: int, nnz: int, plain: sp.csr_matrix | None):
        self.n_rows, self.n_features = n_rows, n_features
        self.rowptr = np.zeros((n_rows, n_parts + 1), dtype=np.int64)
        self.indices = np.empty(nnz, dtype=np.int32)
        self.codes = np.empty(nnz, dtype=np.uint8)
        self.rowscale = np.ones((n_rows, n_parts), dtype=np.float64)
        self.tf = np.zeros((n_parts, 256), dtype=np.float64)
        self.idf = np.ones(n_features, dtype=np.float64)
        self.columns = np.arange(n_features, dtype=np.int64)
        self.ov_rowptr = np.zeros(n_rows + 1, dtype=np.int64)  # counts over 254, row by row:
        self.ov_pos = np.zeros(0, dtype=np.int64)  # position of the non-zero,
        self.ov_part = np.zeros(0, dtype=np.int64)  # its part,
        self.ov_tf = np.zeros(0, dtype=np.float64)  # its exact tf
        self.plain = plain if plain is not None else sp.csr_matrix((n_rows, n_features))
        self.plain.indptr = self.plain.indptr.astype(np.int64)
        self.plain.indices = self.plain.indices.astype(np.int64)
        self.plain.data = self.plain.data.astype(np.float64)

    @property
    def shape(self) -> tuple[int, int]:
        return self.n_rows, self.n_features

    @property
    def nnz(self) -> int:
        return len(self.indices) + self.plain.nnz

    @property
    def nbytes(self) -> int:
        arrays = (self.rowptr, self.indices, self.codes, self.rowscale, self.idf, self.columns, self.ov_rowptr,
                  self.ov_pos, self.ov_part, self.ov_tf, self.plain.data, self.plain.indices, self.plain.indptr)
        return sum(a.nbytes for a in arrays)

    def to_csr(self, dtype: Any = np.float32) -> sp.csr_matrix:
        """The design matrix as one CSR matrix in the union's column order (``fit_transform``'s output)."""
        n_parts = self.rowscale.shape[1]
        parts = np.repeat(np.tile(np.arange(n_parts), self.n_rows), np.diff(self.rowptr, axis=1).ravel())
        rows = np.repeat(np.arange(self.n_rows), self.rowptr[:, -1] - self.rowptr[:, 0])
        tf = self.tf[parts, self.codes]
        if len(self.ov_pos):
            tf[self.ov_pos] = self.ov_tf
        values = tf * self.idf[self.indices] * self.rowscale[rows, parts]
        plain = self.plain.tocoo()
        X = sp.csr_matrix((np.concatenate([values, plain.data]).astype(dtype),
                           (np.concatenate([rows, plain.row]),
                            self.columns[np.concatenate([self.indices, plain.col])])),
                          shape=self.shape)
        X.sort_indices()
        return X


# --- counting pass and vocabulary ---------------------------------------------------------------

class _Chunk:
    """Counts of one chunk for one vectorizer: CSR over all terms seen, counts as uint8 codes."""

    __slots__ = ("indptr", "cols", "codes", "ov_pos", "ov_count")
    _FIELDS = __slots__

    def __init__(self, indptr: np.ndarray, cols: np.ndarray, codes: np.ndarray, ov_pos: np.ndarray,
                 ov_count: np.ndarray):
        self.indptr, self.cols, self.codes, self.ov_pos, self.ov_count = indptr, cols, codes, ov_pos, ov_count

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, f).nbytes for f in self._FIELDS)

    def save(self, path: Path) -> "_SpilledChunk":
        """Write the arrays to ``path`` (numpy format, no pickle) and return a handle to load them back."""
        with open(path, "wb") as fh:
            for f in self._FIELDS:
                np.save(fh, getattr(self, f), allow_pickle=False)
        return _SpilledChunk(path)


class _SpilledChunk:
    """A :class:`_Chunk` kept on disk until the design matrix is assembled."""

    __slots__ = ("path",)

    def __init__(self, path: Path):
        self.path = path

    def load(self) -> _Chunk:
        with open(self.path, "rb") as fh:
            arrays = [np.load(fh, allow_pickle=False) for _ in _Chunk._FIELDS]
        self.path.unlink()
        return _Chunk(*arrays)


class _WordCache(dict):
    """word -> int32 ids (as bytes) of its char_wb n-grams, computed on first sight."""

    def __init__(self, ngrams: Callable[[str], list[str]], ids: Callable[[str], int]):
        super().__init__()
        self._ngrams, self._ids = ngrams, ids

    def __missing__(self, word: str) -> bytes:
        value = array("i", map(self._ids, self._ngrams(word))).tobytes()
        self[word] = value
        return value


class _TfidfCounter:
    """One TfidfVectorizer fitted in chunks: counting pass, vocabulary, then its compact block."""

    def __init__(self, vec: TfidfVectorizer, spill_dir: Path | None = None):
        self.vec = vec
        _prepare(vec)
        self.spill_dir, self._kept_bytes = spill_dir, 0
        self._df_seen = np.zeros(0, dtype=np.int64)  # document frequency of every term seen so far
        terms: defaultdict[str, int] = defaultdict()
        terms.default_factory = terms.__len__  # new term -> next id, as CountVectorizer._count_vocab
        self.terms: defaultdict[str, int] | None = terms
        self.chunks: list[_Chunk | _SpilledChunk | None] = []
        self.n_rows = 0
        self.n_features = 0
        self.df: np.ndarray | None = None
        self.remap: np.ndarray | None = None
        self._cache: _WordCache | None = None
        if vec.analyzer == "char_wb":
            # sklearn's char_wb n-grams of a document are those of each of its space-separated words
            decode, preprocess = vec.decode, vec.build_preprocessor()
            white = vec._white_spaces
            cache = self._cache = _WordCache(vec._char_wb_ngrams, terms.__getitem__)

            def ids_of(doc: str) -> bytes:
                if len(cache) > _WORD_CACHE_LIMIT:
                    cache.clear()
                return b"".join(map(cache.__getitem__, white.sub(" ", preprocess(decode(doc))).split()))
            self._item_bytes = 4
        else:
            analyze, lookup = vec.build_analyzer(), terms.__getitem__

            def ids_of(doc: str) -> array:  # type: ignore[misc]
                return array("i", map(lookup, analyze(doc)))
            self._item_bytes = 1
        self._ids_of = ids_of

    def count(self, docs: Sequence[str]) -> None:
        """Count the n-grams of one chunk of documents."""
        assert self.terms is not None
        buf = bytearray()
        lengths = np.empty(len(docs), dtype=np.int64)
        ids_of = self._ids_of
        for i, doc in enumerate(docs):
            ids = ids_of(doc)
            buf += ids
            lengths[i] = len(ids)
        lengths //= self._item_bytes
        ids_arr = np.frombuffer(buf, dtype=np.int32)
        rows = np.repeat(np.arange(len(docs), dtype=np.int32), lengths)
        # one entry per (row, term), duplicates summed into counts
        m = sp.csr_matrix((np.ones(len(ids_arr), dtype=np.int32), (rows, ids_arr)),
                          shape=(len(docs), max(len(self.terms), 1)))
        del buf, ids_arr, rows
        m.sum_duplicates()
        ov = np.flatnonzero(m.data > _MAX_CODE)
        codes = m.data.astype(np.uint8)
        codes[ov] = _OVERFLOW
        chunk = _Chunk(m.indptr.astype(np.int64), m.indices.astype(np.int32), codes, ov, m.data[ov].astype(np.int64))
        del m
        df = np.bincount(chunk.cols, minlength=len(self.terms))
        df[:len(self._df_seen)] += self._df_seen
        self._df_seen = df
        if self.spill_dir is not None and self._kept_bytes + chunk.nbytes > SPILL_AFTER_BYTES:
            self.chunks.append(chunk.save(self.spill_dir / f"counts-{id(self):x}-{len(self.chunks)}.npy"))
        else:
            self._kept_bytes += chunk.nbytes
            self.chunks.append(chunk)
        self.n_rows += len(docs)

    def fit_vocabulary(self) -> None:
        """Set ``vocabulary_`` and ``idf_`` exactly as TfidfVectorizer.fit would on the counted rows."""
        vec = self.vec
        assert self.terms is not None
        n_terms = len(self.terms)
        # the analyzer closure holds the word cache and the dict's lookup: emptied here, not just
        # dropped, or both would stay alive (and resident) until the counter itself is freed
        if self._cache is not None:
            self._cache.clear()
        self._cache = self._ids_of = None  # type: ignore[assignment]
        if not n_terms:
            raise ValueError("empty vocabulary; perhaps the documents only contain stop words")
        df, self._df_seen = self._df_seen, np.zeros(0, dtype=np.int64)
        n_doc = self.n_rows
        max_doc_count = vec.max_df if isinstance(vec.max_df, Integral) else vec.max_df * n_doc
        min_doc_count = vec.min_df if isinstance(vec.min_df, Integral) else vec.min_df * n_doc
        if max_doc_count < min_doc_count:
            raise ValueError("max_df corresponds to < documents than min_df")
        keep = np.flatnonzero((df <= max_doc_count) & (df >= min_doc_count))
        if len(keep) == 0:
            raise ValueError("After pruning, no terms remain. Try a lower min_df or a higher max_df.")
        all_terms = list(self.terms)  # insertion order == id order
        self.terms.clear()  # the dict of every n-gram seen: the largest object of the counting pass
        self.terms = None
        kept_terms = [all_terms[i] for i in keep]
        del all_terms
        order = np.asarray(sorted(range(len(kept_terms)), key=kept_terms.__getitem__), dtype=np.int64)
        # fresh str objects for the kept terms, so the memory of all the others is freed whole
        vec.vocabulary_ = {(" " + kept_terms[i])[1:]: j for j, i in enumerate(order.tolist())}
        del kept_terms
        kept_sorted = keep[order]
        remap = np.full(n_terms, -1, dtype=np.int32)
        remap[kept_sorted] = np.arange(len(keep), dtype=np.int32)
        self.remap, self.n_features = remap, len(keep)
        self.df = df[kept_sorted]
        tfidf = TfidfTransformer(norm=vec.norm, use_idf=vec.use_idf, smooth_idf=vec.smooth_idf,
                                 sublinear_tf=vec.sublinear_tf)
        tfidf.n_features_in_ = len(keep)
        if vec.use_idf:  # TfidfTransformer.fit, operation for operation
            dtype = vec.dtype if vec.dtype in (np.float64, np.float32) else np.float64
            dfk = self.df.astype(dtype, copy=True)
            dfk += float(vec.smooth_idf)
            n_samples = n_doc + int(vec.smooth_idf)
            idf = np.full_like(dfk, fill_value=n_samples, dtype=dtype)
            idf /= dfk
            np.log(idf, out=idf)
            idf += 1.0
            tfidf.idf_ = idf
        vec._tfidf = tfidf

    def _tf(self, counts: np.ndarray) -> np.ndarray:
        """tf of counts as TfidfTransformer.transform computes it (in the vectorizer's dtype)."""
        vec = self.vec
        dtype = vec.dtype if vec.dtype in (np.float64, np.float32) else np.float64
        tf = np.asarray(counts, dtype=dtype).copy()
        if vec.binary:
            tf[tf > 0] = 1
        if vec.sublinear_tf:
            with np.errstate(divide="ignore"):
                np.log(tf, tf)
            tf += 1.0
        return tf.astype(np.float64)

    def tf_table(self) -> np.ndarray:
        """tf of the codes 0..255 (0 and the overflow code 255 map to 0)."""
        tf = self._tf(np.arange(256))
        tf[0] = tf[_OVERFLOW] = 0.0
        return tf

    def pop_chunk(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Chunk ``k`` pruned to the vocabulary, then freed: (rows, vocabulary ids, codes, overflow
        positions in these arrays, exact tf at those positions); entries in row order."""
        assert self.remap is not None
        c = self.chunks[k]
        assert c is not None
        self.chunks[k] = None
        if isinstance(c, _SpilledChunk):
            c = c.load()
        cols = self.remap[c.cols]
        keep = cols >= 0
        rows = np.repeat(np.arange(len(c.indptr) - 1), np.diff(c.indptr))[keep]
        if len(c.ov_pos):
            kept_ov = keep[c.ov_pos]
            ov_local = (np.cumsum(keep) - 1)[c.ov_pos[kept_ov]]
            ov_tf = self._tf(c.ov_count[kept_ov])
        else:
            ov_local, ov_tf = np.zeros(0, dtype=np.int64), np.zeros(0)
        return rows, cols[keep], c.codes[keep], ov_local, ov_tf

    def release(self) -> None:
        self.chunks, self.remap = [], None


def _prepare(vec: TfidfVectorizer) -> None:
    """The checks and state TfidfVectorizer.fit starts with (parameter validation, warnings)."""
    if hasattr(vec, "_validate_params"):
        vec._validate_params()
    vec._check_params()
    vec._validate_ngram_range()
    vec._warn_for_unused_params()
    vec._validate_vocabulary()


def _leanable(part: Any) -> bool:
    """True for a TfidfVectorizer whose fit this module reproduces exactly."""
    return (type(part) is TfidfVectorizer and part.vocabulary is None and part.max_features is None
            and part.input == "content" and part.norm in (None, "l1", "l2"))


def _check_docs(X: Any) -> None:
    if isinstance(X, str):
        raise ValueError("Iterable over raw text documents expected, string object received.")


def fit_union_lean(union: FeatureUnion | TfidfVectorizer, X: Sequence[Any], y: Any = None,
                   transform: Callable[[Sequence[Any]], Sequence[str]] | None = None,
                   chunk_rows: int = DEFAULT_CHUNK_ROWS) -> LeanDesign:
    """Fit ``union`` on ``transform(X)`` (``X`` itself without one) and return its design matrix.

    ``transform`` (the fitted steps before the features) is applied chunk by chunk, so its output
    is never held for all rows unless a part must be fitted the normal way. The matrix equals
    ``union.fit_transform(transform(X))``; the fitted parts are those ``fit_transform`` leaves.
    """
    _check_docs(X)
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    X = X if isinstance(X, list) else list(X)
    if not X:
        raise ValueError("no documents to fit on")
    if isinstance(union, FeatureUnion):
        union.transformer_list = list(union.transformer_list)
        union._validate_transformers()
        union._validate_transformer_weights()
        parts = [(name, part, weight) for name, part, weight in union._iter()]
    elif isinstance(union, TfidfVectorizer):
        parts = [("tfidf", union, None)]
    else:
        raise TypeError(f"expected a FeatureUnion or a TfidfVectorizer, got {type(union).__name__}")
    if not parts:
        raise ValueError("the FeatureUnion has no transformers to fit")

    start = time.perf_counter()
    # counts beyond SPILL_AFTER_BYTES wait on disk; the directory goes with whatever is left in it
    with tempfile.TemporaryDirectory(prefix="modclf-fit-") as spill:
        counters = {i: _TfidfCounter(part, spill_dir=Path(spill)) for i, (_, part, _) in enumerate(parts)
                    if _leanable(part)}
        plain: dict[int, sp.csr_matrix] = {}
        if len(counters) < len(parts):
            docs = transform(X) if transform is not None else X
            for i, (name, part, weight) in enumerate(parts):
                if i not in counters:  # fitted the normal way, on all rows
                    log.info("feature part %r (%s) fitted with fit_transform", name, type(part).__name__)
                    out = sp.csr_matrix(part.fit_transform(docs, y), dtype=np.float64)
                    plain[i] = out * weight if weight is not None else out
            del docs
        bounds = list(range(0, len(X), chunk_rows)) + [len(X)]
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            docs = transform(X[lo:hi]) if transform is not None else X[lo:hi]
            for counter in counters.values():
                counter.count(docs)
        log.info("counted the n-grams of %d rows in %.1f s (%s)", len(X), time.perf_counter() - start,
                 ", ".join(f"{parts[i][0]}: {len(c.terms or ()):,} distinct" for i, c in counters.items()))
        for i, counter in counters.items():
            counter.fit_vocabulary()
            log.info("feature part %r: %d terms kept", parts[i][0], counter.n_features)
            _release_freed_memory()
        design = _assemble(parts, counters, plain, bounds)
    if isinstance(union, FeatureUnion):
        union._update_transformer_list([p for _, p, _ in parts])
    log.info("design matrix %d x %d, %d non-zeros in %.0f MB, in %.1f s", design.n_rows, design.n_features,
             design.nnz, design.nbytes / 2**20, time.perf_counter() - start)
    return design


def _assemble(parts: list[tuple[str, Any, Any]], counters: dict[int, _TfidfCounter],
              plain: dict[int, sp.csr_matrix], bounds: list[int]) -> LeanDesign:
    """Merge the pruned chunks of every TF-IDF part (each freed once copied) into one LeanDesign."""
    widths = [counters[i].n_features if i in counters else plain[i].shape[1] for i in range(len(parts))]
    offsets = np.concatenate([[0], np.cumsum(widths)]).astype(np.int64)
    n_rows, n_features = bounds[-1], int(offsets[-1])
    # internal column order: by document frequency, most frequent first (cache locality)
    df = np.zeros(n_features, dtype=np.int64)
    for i in range(len(parts)):
        df[offsets[i]:offsets[i + 1]] = counters[i].df if i in counters else \
            np.bincount(plain[i].indices, minlength=widths[i])
    columns = np.argsort(-df, kind="stable")
    internal = np.empty(n_features, dtype=np.int64)
    internal[columns] = np.arange(n_features)
    lean = sorted(counters)
    nnz = int(sum(counters[i].df.sum() for i in lean))
    plain_X = None
    if plain:
        blocks = [plain[i] if i in plain else sp.csr_matrix((n_rows, widths[i])) for i in range(len(parts))]
        plain_X = sp.csr_matrix(sp.hstack(blocks, format="csr"), dtype=np.float64)
        plain_X.indices = internal[plain_X.indices]
    design = LeanDesign(n_rows, n_features, len(lean), nnz, plain_X)
    design.columns = columns
    for p, i in enumerate(lean):
        c = counters[i]
        design.tf[p] = c.tf_table()
        if c.vec.use_idf:
            design.idf[internal[offsets[i]:offsets[i + 1]]] = np.asarray(c.vec.idf_, dtype=np.float64)
    ov_pos, ov_part, ov_tf = [], [], []
    pos = 0
    for k, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        n = hi - lo
        pieces = [counters[i].pop_chunk(k) for i in lean]
        counts = np.stack([np.bincount(piece[0], minlength=n) for piece in pieces], axis=1) if pieces \
            else np.zeros((n, 0), dtype=np.int64)
        ends = pos + np.cumsum(counts.sum(axis=1))
        design.rowptr[lo:hi, 0] = ends - counts.sum(axis=1)
        design.rowptr[lo:hi, 1:] = design.rowptr[lo:hi, :1] + np.cumsum(counts, axis=1)
        for p, (i, (rows, cols, codes, ov_local, ov_exact)) in enumerate(zip(lean, pieces)):
            first = np.cumsum(counts[:, p]) - counts[:, p]  # index of each row's first entry in this piece
            at = design.rowptr[lo + rows, p] + (np.arange(len(rows)) - first[rows])
            design.indices[at] = internal[cols + offsets[i]]
            design.codes[at] = codes
            if len(ov_local):
                ov_pos.append(at[ov_local])
                ov_part.append(np.full(len(ov_local), p, dtype=np.int64))
                ov_tf.append(ov_exact)
            vec = counters[i].vec
            if vec.norm is not None:  # TfidfTransformer's normalize, as a scale per row and part
                tfv = design.tf[p][codes]
                tfv[ov_local] = ov_exact
                x = tfv * design.idf[design.indices[at]]
                norms = np.bincount(rows, weights=x * x if vec.norm == "l2" else np.abs(x), minlength=n)
                if vec.norm == "l2":
                    np.sqrt(norms, out=norms)
                norms[norms == 0.0] = 1.0
                design.rowscale[lo:hi, p] = 1.0 / norms
            weight = parts[i][2]
            if weight is not None:
                design.rowscale[lo:hi, p] *= weight
        pos = int(ends[-1]) if n else pos
        del pieces
        _release_freed_memory()
    assert pos == nnz
    for i in lean:
        counters[i].release()
    if ov_pos:
        order = np.argsort(np.concatenate(ov_pos), kind="stable")
        design.ov_pos = np.concatenate(ov_pos)[order]
        design.ov_part = np.concatenate(ov_part)[order]
        design.ov_tf = np.concatenate(ov_tf)[order]
        ov_rows = np.searchsorted(design.rowptr[:, 0], design.ov_pos, side="right") - 1
        np.cumsum(np.bincount(ov_rows, minlength=n_rows), out=design.ov_rowptr[1:])
    return design


# --- the classifier -----------------------------------------------------------------------------

def _lbfgs_applies(clf: Any, n_classes: int) -> bool:
    """True when ``clf.fit`` would minimize the multinomial L2 objective with lbfgs (reproduced here).

    Anything else (two classes, another penalty or solver, warm start) is left to ``clf.fit``.
    """
    return (type(clf) is LogisticRegression and clf.solver == "lbfgs" and clf.penalty == "deprecated"
            and clf.l1_ratio == 0 and not clf.warm_start and not clf.dual and n_classes >= 3)


class _MultinomialObjective:
    """scikit-learn's LinearModelLoss(HalfMultinomialLoss) objective, over a LeanDesign.

    ``loss = sum_i sw_i * (logsumexp(z_i) - z_i[y_i]) / sum(sw) + l2 / 2 * ||W||^2`` with
    ``z = X @ W + intercept``, as LogisticRegression's lbfgs path minimizes it. Coefficients are
    laid out as that path lays them out: per feature the K class weights together, the intercepts
    last; features in the design's internal order.
    """

    def __init__(self, design: LeanDesign, y_codes: np.ndarray, sample_weight: np.ndarray, l2: float,
                 n_classes: int, fit_intercept: bool):
        self.design = design
        self.y, self.sw, self.l2 = y_codes, sample_weight, l2
        self.sw_sum = float(np.sum(sample_weight))
        self.nf, self.K, self.fit_intercept = design.n_features, n_classes, fit_intercept
        self.Kp = -(-n_classes // _GROUP) * _GROUP
        # per row range: [idf * W (classes padded with zeros) | gradient], feature by feature
        self.A = np.zeros((_PARTITIONS, design.n_features, 2 * self.Kp))
        self.totals = np.empty(_PARTITIONS)
        self.g_intercept = np.empty((_PARTITIONS, n_classes))
        self.evaluations = 0

    def __call__(self, x: np.ndarray, grad: np.ndarray) -> float:
        """Loss at ``x``; its gradient is written into ``grad``."""
        d, nf, K, Kp, A = self.design, self.nf, self.K, self.Kp, self.A
        W = x[:nf * K].reshape(nf, K)
        np.multiply(W, d.idf[:, None], out=A[0, :, :K])
        A[1:, :, :K] = A[0, :, :K]
        A[:, :, Kp:] = 0.0
        intercept = np.ascontiguousarray(x[nf * K:]) if self.fit_intercept else np.zeros(K)
        _loss_grad(d.rowptr, d.indices, d.codes, d.rowscale, d.tf, d.ov_rowptr, d.ov_pos, d.ov_part, d.ov_tf,
                   d.plain.indptr, d.plain.indices, d.plain.data, self.y, self.sw, intercept, A, self.totals,
                   self.g_intercept)
        loss = float(np.sum(self.totals)) / self.sw_sum + 0.5 * self.l2 * _dot(x[:nf * K], x[:nf * K])
        gW = grad[:nf * K].reshape(nf, K)
        gW[:] = A[0, :, Kp:Kp + K]
        for t in range(1, _PARTITIONS):
            gW += A[t, :, Kp:Kp + K]
        gW *= d.idf[:, None]
        gW /= self.sw_sum
        _axpy(self.l2, x[:nf * K], grad[:nf * K])
        if self.fit_intercept:
            grad[nf * K:] = self.g_intercept.sum(axis=0) / self.sw_sum
        self.evaluations += 1
        return loss


def _lbfgs(fun: Callable[[np.ndarray, np.ndarray], float], x: np.ndarray, max_iter: int, tol: float,
           memory: int = LBFGS_MEMORY, maxls: int = 50) -> tuple[np.ndarray, int, str]:
    """Minimize ``fun`` from ``x`` (updated in place) by L-BFGS; returns (x, iterations, status).

    Stops as scipy's L-BFGS-B does for scikit-learn: ``max|grad| <= tol``, a relative decrease of
    at most 64 machine epsilons, or ``max_iter`` iterations. Steps: backtracking with quadratic
    interpolation to the Armijo condition (the objective is strictly convex, so every pair
    satisfies ``s.y > 0``). Correction pairs are kept in float32, ``memory`` of them.
    """
    n = x.size
    ftol = 64 * np.finfo(float).eps
    g = np.empty(n)
    f = fun(x, g)
    S = np.empty((memory, n), dtype=np.float32)
    Y = np.empty((memory, n), dtype=np.float32)
    rho = np.zeros(memory)
    alpha = np.zeros(memory)
    d, x_new, g_new = np.empty(n), np.empty(n), np.empty(n)
    stored = head = 0
    gamma = 1.0
    it = 0
    while True:
        if np.max(np.abs(g)) <= tol:
            return x, it, "converged"
        if it >= max_iter:
            return x, it, "max_iter"
        np.negative(g, out=d)  # d = -H g by the two-loop recursion
        order = [(head - 1 - i) % memory for i in range(stored)]
        for i in order:
            alpha[i] = rho[i] * _dot(S[i], d)
            _axpy(-alpha[i], Y[i], d)
        d *= gamma
        for i in reversed(order):
            beta = rho[i] * _dot(Y[i], d)
            _axpy(alpha[i] - beta, S[i], d)
        gd = _dot(g, d)
        if not gd < 0:  # not a descent direction (numerically): restart from steepest descent
            stored = 0
            np.negative(g, out=d)
            gd = -_dot(g, g)
        step = 1.0 if stored else min(1.0, 1.0 / np.sqrt(-gd))
        for _ in range(maxls):
            np.multiply(d, step, out=x_new)
            x_new += x
            f_new = fun(x_new, g_new)
            if f_new <= f + 1e-4 * step * gd:
                break
            curvature = f_new - f - gd * step
            trial = -gd * step * step / (2 * curvature) if curvature > 0 else 0.5 * step
            step = min(max(trial, 0.1 * step), 0.5 * step)
        else:
            return x, it, "line search failed"
        np.subtract(x_new, x, out=S[head], casting="unsafe")
        np.subtract(g_new, g, out=Y[head], casting="unsafe")
        sy, yy = _dot(S[head], Y[head]), _dot(Y[head], Y[head])
        if sy > np.finfo(np.float32).eps * yy:
            rho[head] = 1.0 / sy
            gamma = sy / yy
            head = (head + 1) % memory
            stored = min(stored + 1, memory)
        decrease = (f - f_new) / max(abs(f), abs(f_new), 1.0)
        x, x_new = x_new, x
        g, g_new = g_new, g
        f = f_new
        it += 1
        if it % 25 == 0:
            log.debug("lbfgs iteration %d: loss %.10g, max|grad| %.3g", it, f, np.max(np.abs(g)))
        if decrease <= ftol:
            return x, it, "converged (relative reduction of the loss)"


def fit_logistic_lean(clf: Any, design: LeanDesign, y: Sequence[Any]) -> Any:
    """Fit a multinomial L2 ``LogisticRegression`` (lbfgs) on a LeanDesign; returns ``clf``.

    Sets what ``LogisticRegression.fit`` sets (``classes_``, ``coef_``, ``intercept_``, ``n_iter_``,
    ``n_features_in_``), float64 like a float64 fit.
    """
    y_arr = column_or_1d(np.asarray(y), warn=True)
    if len(y_arr) != design.n_rows:
        raise ValueError(f"X has {design.n_rows} rows but y has {len(y_arr)}")
    classes = np.unique(y_arr) if isinstance(clf, LogisticRegression) else None
    if classes is None or not _lbfgs_applies(clf, len(classes)):
        log.info("%s fitted by scikit-learn on the float32 CSR matrix", type(clf).__name__)
        return clf.fit(design.to_csr(np.float32), y_arr)
    clf._validate_params()
    check_classification_targets(y_arr)
    le = LabelEncoder().fit(classes)
    y_codes = le.transform(y_arr).astype(np.float64)
    sample_weight = np.ones(len(y_arr), dtype=np.float64)
    if clf.class_weight is not None:
        class_weight = compute_class_weight(clf.class_weight, classes=classes, y=y_arr, sample_weight=sample_weight)
        sample_weight *= np.asarray(class_weight, dtype=np.float64)[le.transform(y_arr)]
    K, nf = len(classes), design.n_features
    l2 = 1.0 / (clf.C * float(np.sum(sample_weight)))
    objective = _MultinomialObjective(design, y_codes, sample_weight, l2, K, clf.fit_intercept)
    start = time.perf_counter()
    x = np.zeros(nf * K + (K if clf.fit_intercept else 0))
    x, n_iter, status = _lbfgs(objective, x, clf.max_iter, clf.tol * _TOL_FACTOR)
    log.info("L-BFGS: %s after %d iterations (%d loss evaluations) in %.1f s", status, n_iter,
             objective.evaluations, time.perf_counter() - start)
    if not status.startswith("converged"):
        warnings.warn(f"lbfgs failed to converge ({status}): increase the number of iterations "
                      f"(max_iter={clf.max_iter}) or scale the data", ConvergenceWarning, stacklevel=2)
    clf.n_features_in_ = nf
    clf.classes_ = classes
    clf.n_iter_ = np.asarray([n_iter], dtype=np.int32)
    coef = np.empty((K, nf))
    coef[:, design.columns] = x[:nf * K].reshape(nf, K).T  # internal column order -> the union's
    clf.coef_ = coef
    clf.intercept_ = x[nf * K:].copy() if clf.fit_intercept else np.zeros(K)
    return clf


def fit_pipeline_lean(pipeline: Pipeline, X: Sequence[Any], y: Sequence[Any],
                      chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Pipeline:
    """Fit ``pipeline`` (steps ..., features, classifier) on texts ``X`` and labels ``y``; return it.

    The steps before the features are fitted on all rows and applied chunk by chunk (text
    transformers work row by row); the feature step (a FeatureUnion or a TfidfVectorizer) with
    :func:`fit_union_lean`; the classifier with :func:`fit_logistic_lean`.
    """
    if not isinstance(pipeline, Pipeline):
        raise TypeError(f"expected a Pipeline, got {type(pipeline).__name__}")
    _check_docs(X)
    X, y = list(X), list(y)
    if len(X) != len(y):
        raise ValueError(f"texts and labels differ in length: {len(X)} texts, {len(y)} labels")
    if not X:
        raise ValueError("no training texts")
    pipeline.steps = list(pipeline.steps)
    pipeline._validate_steps()
    if len(pipeline.steps) < 2 or not isinstance(pipeline.steps[-2][1], (FeatureUnion, TfidfVectorizer)):
        raise ValueError("the step before the final estimator must be a FeatureUnion or a TfidfVectorizer")
    pre = [step for _, step in pipeline.steps[:-2] if step is not None and step != "passthrough"]
    Xt: Any = X
    for step in pre[:-1]:
        Xt = step.fit_transform(Xt, y)
    transform = pre[-1].fit(Xt, y).transform if pre else None
    design = fit_union_lean(pipeline.steps[-2][1], Xt, y, transform=transform, chunk_rows=chunk_rows)
    del Xt
    fit_logistic_lean(pipeline.steps[-1][1], design, y)
    return pipeline
