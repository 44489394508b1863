"""The model: pipeline definition, and the on-disk artifact (joblib pipeline + model.json).

This is the one place that knows how a model is built, saved and loaded; the trainer, the batch
scorer and the service all go through it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import joblib
import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from .atomic import atomic_write_bytes
from .errors import ModelError
from .features import TextNormalizer, build_features
from .labels import LABELS
from .settings import DEFAULT_MODEL_DIR

log = logging.getLogger(__name__)

MODEL_FILE = "model.joblib"
META_FILE = "model.json"


#: Label frequencies expected in live comment sections. The corpus over-represents the rare labels
#: on purpose (a model needs many genuine questions to learn what one looks like), so training
#: re-weights each label by expected / corpus frequency: the standard correction for label shift.
#: Genuine questions are a few percent of real comments; without this the model calls every
#: rhetorical question a question. The figures are rounded label rates of public comment corpora.
DEPLOYMENT_PRIOR: dict[str, float] = {"spam": 0.15, "dispute": 0.27, "question": 0.04, "support": 0.16, "other": 0.38}

#: Inverse regularization strength. Strong regularization transfers better from our written corpus
#: to real comments than the value that maximizes cross-validation on the corpus itself.
DEFAULT_C = 1.0


def prior_class_weight(labels: Sequence[str], prior: dict[str, float] | None = None) -> dict[str, float]:
    """Per-label sample weights that make the training distribution match ``prior``."""
    prior = prior or DEPLOYMENT_PRIOR
    counts = {label: 0 for label in LABELS}
    for label in labels:
        counts[label] += 1
    n = sum(counts.values())
    return {label: round(prior[label] * n / counts[label], 6) for label in LABELS if counts[label]}


def build_pipeline(seed: int = 0, C: float = DEFAULT_C, class_weight: dict[str, float] | str | None = None) -> Pipeline:
    """The shipped model: normalization, word + char TF-IDF, multinomial logistic regression.

    ``class_weight`` is normally :func:`prior_class_weight` of the training labels.
    """
    return Pipeline(
        [
            ("normalize", TextNormalizer()),
            ("features", build_features()),
            ("clf", LogisticRegression(C=C, max_iter=3000, class_weight=class_weight, random_state=seed)),
        ]
    )


def fit_model(texts: Sequence[str], labels: Sequence[str], seed: int = 0) -> Pipeline:
    """Fit the shipped model exactly as train.py does (prior re-weighting included)."""
    return build_pipeline(seed, class_weight=prior_class_weight(labels)).fit(list(texts), list(labels))


def build_baseline(seed: int = 0) -> Pipeline:
    """The naive reference: default TfidfVectorizer + default LogisticRegression."""
    return Pipeline(
        [("tfidf", TfidfVectorizer()), ("clf", LogisticRegression(max_iter=1000, random_state=seed))]
    )


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode("utf-8"))


@dataclass
class ModelArtifact:
    """A loaded model: the fitted pipeline plus its metadata."""

    pipeline: Pipeline
    meta: dict[str, Any] = field(default_factory=dict)
    directory: Path | None = None

    @property
    def version(self) -> str:
        return str(self.meta.get("model_version", "unknown"))

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.pipeline.classes_)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities with columns in :data:`modclf.labels.LABELS` order."""
        proba = self.pipeline.predict_proba(list(texts))
        order = [list(self.pipeline.classes_).index(label) for label in LABELS]
        return proba[:, order]


def save_artifact(pipeline: Pipeline, meta: dict[str, Any], model_dir: str | Path) -> dict[str, Any]:
    """Persist the pipeline and its metadata; the model file's sha256 is recorded in the metadata.

    Both files are written atomically, model first, so a reader never sees metadata describing a
    model file that is not there yet.
    """
    model_dir = Path(model_dir)
    tmp, digest = dump_pipeline(pipeline, model_dir)
    try:
        meta = {**meta, "model_file": MODEL_FILE, "model_sha256": digest}
        os.replace(tmp, model_dir / MODEL_FILE)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    write_json(model_dir / META_FILE, meta)
    return meta


def dump_pipeline(pipeline: Pipeline, model_dir: Path) -> tuple[Path, str]:
    """Write the pipeline to a synced temporary file in ``model_dir``; return it and its sha256.

    The caller renames the file into place (or removes it on failure).
    """
    model_dir.mkdir(parents=True, exist_ok=True)
    _drop_run_state(pipeline)
    fd, name = tempfile.mkstemp(dir=model_dir, prefix=".model.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        joblib.dump(pipeline, tmp, compress=3)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        return tmp, sha256_file(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _drop_run_state(pipeline: Pipeline) -> None:
    """Remove what a fitted pipeline remembers of the process that fitted it, so that the same data
    and seed give a byte-identical model file: TfidfVectorizer caches ``id(stop_words)`` (a memory
    address) in ``_stop_words_id`` to skip a check on the next fit; transform never reads it."""
    for _, step in pipeline.steps:
        vectorizers = [v for _, v in getattr(step, "transformer_list", ())] or [step]
        for vec in vectorizers:
            if hasattr(vec, "_stop_words_id"):
                del vec._stop_words_id


def read_meta(model_dir: str | Path) -> dict[str, Any]:
    path = Path(model_dir) / META_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{path}: model metadata not found (train a model with `python train.py`)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: unreadable model metadata: {exc}") from None
    if not isinstance(meta, dict) or "model_sha256" not in meta:
        raise ModelError(f"{path}: model metadata has no 'model_sha256'")
    return meta


def load_artifact(model_dir: str | Path = DEFAULT_MODEL_DIR) -> ModelArtifact:
    """Load and verify a model directory. Raises :class:`ModelError` with a one-line reason."""
    model_dir = Path(model_dir)
    meta = read_meta(model_dir)
    model_path = model_dir / meta.get("model_file", MODEL_FILE)
    if not model_path.is_file():
        raise ModelError(f"{model_path}: model file not found (train a model with `python train.py`)")
    digest = sha256_file(model_path)
    if digest != meta["model_sha256"]:
        raise ModelError(
            f"{model_path}: sha256 {digest[:12]}... does not match {META_FILE} "
            f"({str(meta['model_sha256'])[:12]}...); the model file was changed or corrupted"
        )
    try:
        pipeline = joblib.load(model_path)
    except Exception as exc:  # joblib/pickle raise many types on a corrupt file
        raise ModelError(f"{model_path}: cannot load model: {type(exc).__name__}: {exc}") from None
    if not hasattr(pipeline, "predict_proba") or set(getattr(pipeline, "classes_", ())) != set(LABELS):
        raise ModelError(f"{model_path}: not a classifier over the labels {', '.join(LABELS)}")
    log.info("loaded model %s from %s", meta.get("model_version"), model_dir)
    return ModelArtifact(pipeline=pipeline, meta=meta, directory=model_dir)
