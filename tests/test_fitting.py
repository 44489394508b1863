"""modclf.fitting: the memory-lean fit gives the same fitted pipeline as Pipeline.fit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn._loss.loss import HalfMultinomialLoss
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.linear_model._linear_loss import LinearModelLoss
from sklearn.pipeline import FeatureUnion, Pipeline

from modclf.features import TextNormalizer, build_features
from modclf.fitting import (
    _MultinomialObjective,
    fit_logistic_lean,
    fit_pipeline_lean,
    fit_union_lean,
)
from modclf.model import build_pipeline, prior_class_weight

from .conftest import DATA


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """scikit-learn's lbfgs (the plain fits compared against) calls BLAS on every iteration; BLAS
    threads spinning on a busy machine made it 20x slower. The lean fit does not use BLAS."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def corpus() -> tuple[list[str], list[str], list[str]]:
    """80 training comments per label, and 200 other comments to predict."""
    df = pd.read_csv(DATA, dtype=str, keep_default_na=False).sample(frac=1, random_state=0)
    train = df.groupby("label").head(80)
    held = df.drop(train.index).head(200)
    return train["text"].tolist(), train["label"].tolist(), held["text"].tolist()


@pytest.fixture(scope="module")
def normalized(corpus: tuple[list[str], list[str], list[str]]) -> list[str]:
    return TextNormalizer().transform(corpus[0])


class Lengths(TransformerMixin, BaseEstimator):
    """A small stateless part beside the TF-IDF ones: length (in thousands) and share of capitals."""

    def fit(self, X: list[str], y: object = None) -> "Lengths":
        return self

    def transform(self, X: list[str]) -> sp.csr_matrix:
        return sp.csr_matrix([[len(x) / 1000, sum(c.isupper() for c in x) / max(len(x), 1)] for x in X])


def _assert_same_vectorizers(plain: FeatureUnion, lean: FeatureUnion) -> None:
    for (name, a), (_, b) in zip(plain.transformer_list, lean.transformer_list):
        if not isinstance(a, TfidfVectorizer):
            continue
        assert a.vocabulary_ == b.vocabulary_, name
        assert np.array_equal(a.idf_, b.idf_) and a.idf_.dtype == b.idf_.dtype, name
        assert sorted(vars(a)) == sorted(vars(b)), name
        assert sorted(vars(a._tfidf)) == sorted(vars(b._tfidf)), name


@pytest.mark.parametrize("chunk_rows", [37, 100_000])
def test_vocabulary_idf_and_matrix_are_sklearns(normalized: list[str], chunk_rows: int) -> None:
    plain = build_features()
    expected = plain.fit_transform(normalized)
    lean = build_features()
    design = fit_union_lean(lean, normalized, chunk_rows=chunk_rows)
    _assert_same_vectorizers(plain, lean)
    got = design.to_csr(np.float64)
    assert got.shape == expected.shape and got.nnz == expected.nnz
    assert abs(got - expected).max() < 1e-15
    # the fitted union transforms new text exactly as the plainly fitted one
    assert abs(lean.transform(normalized[:20]) - plain.transform(normalized[:20])).max() == 0


def test_counts_spilled_to_disk_give_the_same_matrix(normalized: list[str], monkeypatch, tmp_path) -> None:
    """Counts kept on disk between the counting pass and assembly (as for large corpora) change
    nothing, and their temporary directory is removed."""
    import tempfile

    import modclf.fitting as fitting

    expected = fit_union_lean(build_features(), normalized, chunk_rows=50).to_csr(np.float64)
    monkeypatch.setattr(fitting, "SPILL_AFTER_BYTES", 0)  # every chunk goes to disk
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    saved = []
    real_save = fitting._Chunk.save
    monkeypatch.setattr(fitting._Chunk, "save", lambda self, path: saved.append(path) or real_save(self, path))
    spilled = build_features()
    got = fit_union_lean(spilled, normalized, chunk_rows=50).to_csr(np.float64)
    assert len(saved) == 2 * -(-len(normalized) // 50)  # every chunk of both TF-IDF parts
    assert got.shape == expected.shape and abs(got - expected).max() == 0
    assert list(tmp_path.iterdir()) == []
    plain = build_features()
    plain.fit(normalized)
    _assert_same_vectorizers(plain, spilled)


def test_counting_state_is_released_once_the_vocabulary_is_fixed(normalized: list[str]) -> None:
    """The dict of every n-gram seen and the char_wb word cache are the largest objects of the
    counting pass; nothing may keep them alive (the analyzer closure did) while the matrix is built."""
    import gc
    import weakref

    from modclf.fitting import _TfidfCounter

    for part in build_features().transformer_list:
        counter = _TfidfCounter(part[1])
        counter.count(normalized)
        terms, cache = counter.terms, counter._cache
        assert terms
        gone = weakref.ref(cache) if cache is not None else None
        counter.fit_vocabulary()
        assert counter.terms is None and counter._ids_of is None
        assert len(terms) == 0  # emptied, not just dropped: the closure may still reach it
        del cache
        gc.collect()
        assert gone is None or gone() is None or len(gone()) == 0


def test_float32_matrix(normalized: list[str]) -> None:
    design = fit_union_lean(build_features(), normalized)
    X32, X64 = design.to_csr(np.float32), design.to_csr(np.float64)
    assert X32.dtype == np.float32 and X32.indices.dtype == np.int32
    assert abs(X32.astype(np.float64) - X64).max() < 1e-7


def test_large_counts_and_other_tfidf_settings() -> None:
    """Counts over 254 (kept beside the uint8 codes), min_df/max_df as proportions, l1 norm, binary."""
    docs = ["ha " * 300 + "end", "ha ha ho " * 120, "ho hum", "hum " * 256, "ha ho hum end", "x y z"] * 3
    for params in [dict(min_df=2), dict(min_df=0.2, max_df=0.9, norm="l1", sublinear_tf=True),
                   dict(binary=True, ngram_range=(1, 2)), dict(norm=None, use_idf=False, analyzer="char_wb",
                                                               ngram_range=(1, 3))]:
        plain, lean = TfidfVectorizer(**params), TfidfVectorizer(**params)
        expected = plain.fit_transform(docs)
        got = fit_union_lean(lean, docs, chunk_rows=4).to_csr(np.float64)
        assert plain.vocabulary_ == lean.vocabulary_, params
        assert abs(got - expected).max() < 1e-13, params


def _check_objective(design, y: np.ndarray, n_classes: int) -> None:
    """The lean objective equals LinearModelLoss(HalfMultinomialLoss) on the same matrix, weights, penalty."""
    X = design.to_csr(np.float64)
    rng = np.random.default_rng(0)
    sw = rng.random(len(y)) + 0.5
    l2 = 1 / sw.sum()
    objective = _MultinomialObjective(design, y, sw, l2, n_classes, fit_intercept=True)
    nf, K = design.n_features, n_classes
    x = rng.normal(size=nf * K + K) * 0.3
    grad = np.empty_like(x)
    loss = objective(x, grad)
    W = np.empty((nf, K))
    W[design.columns] = x[:nf * K].reshape(nf, K)  # internal column order -> the union's
    reference = LinearModelLoss(base_loss=HalfMultinomialLoss(n_classes=K), fit_intercept=True)
    loss_ref, grad_ref = reference.loss_gradient(np.concatenate([W, x[None, nf * K:]]).ravel(), X, y, sw, l2)
    grad_ref = grad_ref.reshape(nf + 1, K)
    assert loss == pytest.approx(loss_ref, rel=1e-12)
    got = np.empty((nf, K))
    got[design.columns] = grad[:nf * K].reshape(nf, K)
    assert np.allclose(got, grad_ref[:nf], rtol=1e-9, atol=1e-15)
    assert np.allclose(grad[nf * K:], grad_ref[nf], rtol=1e-9, atol=1e-15)


def test_objective_is_sklearns_linear_model_loss(normalized: list[str], corpus) -> None:
    y = np.unique(corpus[1], return_inverse=True)[1].astype(np.float64)
    _check_objective(fit_union_lean(build_features(), normalized), y, 5)


@pytest.mark.parametrize("n_classes", [3, 7])
def test_objective_with_large_counts_and_other_class_counts(n_classes: int) -> None:
    """Counts over 254 (beside the uint8 codes) and class counts that are not the kernel's 5."""
    rng = np.random.default_rng(1)
    words = ["ha", "ho", "hum", "tra", "la", "x"]
    docs = [" ".join(rng.choice(words, size=int(rng.integers(1, 2500)))) for _ in range(60)]
    union = FeatureUnion([("word", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)),
                          ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 3)))])
    design = fit_union_lean(union, docs, chunk_rows=7)
    assert len(design.ov_pos) > 0
    _check_objective(design, (np.arange(60) % n_classes).astype(np.float64), n_classes)


def _pipelines(labels: list[str], tol: float) -> tuple[Pipeline, Pipeline]:
    cw = prior_class_weight(labels)
    pipes = build_pipeline(0, class_weight=cw), build_pipeline(0, class_weight=cw)
    for p in pipes:
        p.set_params(clf__tol=tol)
    return pipes


def test_converged_fits_are_the_same_model(corpus) -> None:
    """Both solvers run to a tight tolerance: the same optimum, so the same probabilities."""
    texts, labels, held = corpus
    plain, lean = _pipelines(labels, 1e-9)
    plain.fit(texts, labels)
    fit_pipeline_lean(lean, texts, labels)
    _assert_same_vectorizers(plain.named_steps["features"], lean.named_steps["features"])
    a, b = plain.named_steps["clf"], lean.named_steps["clf"]
    assert sorted(vars(a)) == sorted(vars(b))
    assert list(a.classes_) == list(b.classes_) and a.classes_.dtype == b.classes_.dtype
    assert b.coef_.dtype == np.float64 and b.coef_.shape == a.coef_.shape and b.n_iter_.dtype == np.int32
    assert np.abs(a.coef_ - b.coef_).max() < 1e-4
    assert np.abs(plain.predict_proba(held) - lean.predict_proba(held)).max() < 1e-5


def test_default_tolerance_predicts_like_the_plain_fit(corpus) -> None:
    texts, labels, held = corpus
    plain, lean = _pipelines(labels, 1e-4)
    plain.fit(texts, labels)
    fit_pipeline_lean(lean, texts, labels)
    pa, pb = plain.predict_proba(held), lean.predict_proba(held)
    assert np.abs(pa - pb).max() < 0.02
    assert (pa.argmax(axis=1) == pb.argmax(axis=1)).mean() >= 0.99


def test_other_union_parts_are_fitted_the_normal_way(corpus) -> None:
    texts, labels, held = corpus

    def pipeline() -> Pipeline:
        union = build_features()
        union.transformer_list.append(("lengths", Lengths()))
        union.transformer_weights = {"word": 1.0, "char": 0.5, "lengths": 0.5}
        return Pipeline([("normalize", TextNormalizer()), ("features", union),
                         ("clf", LogisticRegression(max_iter=3000, tol=1e-6))])
    plain, lean = pipeline(), pipeline()
    plain.fit(texts, labels)
    fit_pipeline_lean(lean, texts, labels, chunk_rows=64)
    _assert_same_vectorizers(plain.named_steps["features"], lean.named_steps["features"])
    assert np.abs(plain.predict_proba(held) - lean.predict_proba(held)).max() < 1e-3


def test_other_classifiers_get_the_float32_matrix(corpus) -> None:
    texts, labels, held = corpus
    seen = {}

    class Spy(SGDClassifier):
        def fit(self, X, y, **kw):  # type: ignore[override]
            seen["X"] = X
            return super().fit(X, y, **kw)

    pipeline = Pipeline([("normalize", TextNormalizer()), ("features", build_features()),
                         ("clf", Spy(random_state=0))])
    fit_pipeline_lean(pipeline, texts, labels)
    assert seen["X"].dtype == np.float32 and sp.issparse(seen["X"])
    assert len(pipeline.predict(held)) == len(held)
    # two classes: scikit-learn's binomial objective, fitted by scikit-learn on the float32 matrix
    two = [label if label == "spam" else "ham" for label in labels]
    binary = fit_pipeline_lean(build_pipeline(0), texts, two)
    assert list(binary.named_steps["clf"].classes_) == ["ham", "spam"]


def test_fit_is_deterministic(corpus) -> None:
    texts, labels, _ = corpus
    a = fit_pipeline_lean(build_pipeline(0), texts, labels).named_steps["clf"]
    b = fit_pipeline_lean(build_pipeline(0), texts, labels).named_steps["clf"]
    assert np.array_equal(a.coef_, b.coef_) and np.array_equal(a.intercept_, b.intercept_)


@pytest.mark.parametrize("texts, labels, error, match", [
    (["a b", "a c"], ["spam"], ValueError, "differ in length"),
    ([], [], ValueError, "no training texts"),
    ("a b c", ["spam"] * 5, ValueError, "string object received"),
    (["a b", "c d", "e f"], ["spam", "other", "dispute"], ValueError, "no terms remain"),
    (["a b", "a b", "a c"], ["spam", "spam", "spam"], ValueError, "only one class"),
])
def test_errors(texts, labels, error, match) -> None:
    with pytest.raises(error, match=match):
        fit_pipeline_lean(build_pipeline(0), texts, labels)


def test_configuration_errors(normalized: list[str]) -> None:
    with pytest.raises(ValueError, match="max_df corresponds to < documents than min_df"):
        fit_union_lean(TfidfVectorizer(min_df=5, max_df=2), normalized)
    with pytest.raises(ValueError, match="chunk_rows"):
        fit_union_lean(build_features(), normalized, chunk_rows=0)
    with pytest.raises(TypeError, match="FeatureUnion or a TfidfVectorizer"):
        fit_union_lean(TextNormalizer(), normalized)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="step before the final estimator"):
        fit_pipeline_lean(Pipeline([("clf", LogisticRegression())]), ["a"], ["b"])
    design = fit_union_lean(build_features(), normalized)
    with pytest.raises(ValueError, match="rows but y has"):
        fit_logistic_lean(LogisticRegression(), design, ["spam"] * 3)
