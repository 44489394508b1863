"""The model: pipeline definition, and the on-disk artifact (joblib pipeline + model.json).

This is the one place that knows how a model is built, saved and loaded; the trainer, the batch
scorer and the service all go through it.

A model directory holds ``model.joblib`` (the fitted scikit-learn pipeline), ``model.json`` (its
metadata, including the sha256 of every model file) and, when the pipeline suits the fast path,
``model.fast.npz``: the fast path's finished tables (plain arrays, no pickle) plus scikit-learn's
probabilities for a few reference texts. A scorer that needs only the fast path loads that file
(sha256-verified, ~30 ms) instead of importing scikit-learn and unpickling the pipeline (~2 s).
Directories written before that file existed, or rewritten by a tool that does not write it, still
load: the fast path is then built from the pipeline as before.

scikit-learn and joblib are imported only by the functions that need them, so importing this
module (for :func:`read_meta`, :func:`sha256_file`, ...) is cheap.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .atomic import atomic_write_bytes, fsync_dir
from .errors import ModelError
from .labels import LABELS
from .settings import DEFAULT_MODEL_DIR

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

log = logging.getLogger(__name__)

MODEL_FILE = "model.joblib"
META_FILE = "model.json"
#: The fast path's arrays (numpy .npz, uncompressed, no pickled objects), beside MODEL_FILE.
FAST_FILE = "model.fast.npz"
#: model.json key describing FAST_FILE: file name, sha256, the model sha256 it was built from, layout.
FAST_META_KEY = "fast_arrays"


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
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    from .features import TextNormalizer, build_features

    return Pipeline(
        [
            ("normalize", TextNormalizer()),
            ("features", build_features()),
            ("clf", LogisticRegression(C=C, max_iter=3000, class_weight=class_weight, random_state=seed)),
        ]
    )


def fit_model(texts: Sequence[str], labels: Sequence[str], seed: int = 0,
              weights: Sequence[int] | None = None) -> Pipeline:
    """Fit the shipped model exactly as train.py does (prior re-weighting included).

    ``weights`` (whole numbers, see :data:`modclf.data.WEIGHT_COLUMN`) count a row that many times,
    in the vectorizers' document frequencies and in the classifier's loss, exactly as if it were
    repeated in the data.

    Fitted by :func:`modclf.fitting.fit_pipeline_lean`: the same fitted pipeline as
    ``Pipeline.fit`` (same vocabulary, idf and objective) in a fraction of its memory, so corpora
    of millions of comments train on one machine. On the 17,202 comments of corpus round 6 both
    fits scored 0.636 macro-F1 on the real dev file and 0.827 on the validation set.
    """
    from .fitting import fit_pipeline_lean

    if weights is not None:
        texts, labels = repeat_rows(texts, weights), repeat_rows(labels, weights)
    return fit_pipeline_lean(build_pipeline(seed, class_weight=prior_class_weight(labels)), texts, labels)


def repeat_rows(values: Sequence[Any], weights: Sequence[int]) -> list[Any]:
    """Each of ``values`` repeated its weight's number of times, in order."""
    if len(values) != len(weights):
        raise ValueError(f"{len(values)} rows but {len(weights)} weights")
    return [v for v, k in zip(values, weights) for _ in range(int(k))]


def build_baseline(seed: int = 0) -> Pipeline:
    """The naive reference: default TfidfVectorizer + default LogisticRegression."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

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
    """Persist the pipeline, the fast path's arrays and the metadata; each file's sha256 is recorded
    in the metadata.

    Safe to run into the directory a service loads from, and to kill at any point: the new files
    are written under names of their own (``model-<sha>.joblib``, ``model-<sha>.fast.npz``) and
    ``model.json``, which names the model file and its sha256, is replaced atomically to point at
    them (the switch: until then the old model.json and its untouched files stay valid). Then
    ``model.joblib`` and ``model.fast.npz`` are made the same bytes, model.json is replaced again to
    name them (same checksums), and the staged names are removed. Replacing ``model.joblib`` first,
    as before, left a directory nobody could load when the process died before model.json.
    """
    model_dir = Path(model_dir)
    tmp, digest = dump_pipeline(pipeline, model_dir)
    staged = f"model-{digest[:16]}.joblib"
    try:
        os.replace(tmp, model_dir / staged)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    meta = {k: v for k, v in meta.items() if k != FAST_META_KEY}
    meta.update(model_file=staged, model_sha256=digest)
    staged_fast = f"model-{digest[:16]}.fast.npz"
    fast = save_fast_arrays(pipeline, model_dir, digest, str(meta.get("model_version", "unknown")),
                            file_name=staged_fast)
    fsync_dir(model_dir)
    write_json(model_dir / META_FILE, {**meta, **({FAST_META_KEY: fast} if fast else {})})  # the switch
    link_or_copy(model_dir / staged, model_dir / MODEL_FILE)
    if fast is not None:
        link_or_copy(model_dir / staged_fast, model_dir / FAST_FILE)
    else:
        (model_dir / FAST_FILE).unlink(missing_ok=True)  # arrays of an older model must not linger
    meta = {**meta, "model_file": MODEL_FILE, **({FAST_META_KEY: {**fast, "file": FAST_FILE}} if fast else {})}
    write_json(model_dir / META_FILE, meta)  # the same model under its usual names
    for path in model_dir.glob("model-*"):  # these, and any a killed run left
        if VERSIONED_MODEL.match(path.name):
            path.unlink(missing_ok=True)
    fsync_dir(model_dir)
    return meta


#: Model files written under their checksum (by save_artifact while it switches, and by
#: :func:`modclf.retrain.promote`).
VERSIONED_MODEL = re.compile(r"^model-[0-9a-f]{16}\.(?:joblib|fast\.npz)$")


def link_or_copy(src: Path, dst: Path) -> None:
    """Atomically make ``dst`` the bytes of ``src`` (a hard link, or a synced copy where links are refused)."""
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        import shutil

        shutil.copyfile(src, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
    os.replace(tmp, dst)
    fsync_dir(dst.parent)


def save_fast_arrays(pipeline: Pipeline, model_dir: str | Path, model_sha256: str,
                     version: str = "unknown", file_name: str = FAST_FILE) -> dict[str, Any] | None:
    """Write ``file_name`` (default :data:`FAST_FILE`) for ``pipeline`` (whose model file has
    ``model_sha256``); return its ``model.json`` entry, or None when the fast path does not support
    this pipeline.

    Besides the tables, the file holds scikit-learn's own probabilities for the loader's reference
    texts, so a loader that never unpickles the pipeline still checks the fast path against it.
    The bytes depend only on the pipeline (fixed zip timestamps): same model, same file.
    """
    import zipfile

    from .fast import ARRAYS_FORMAT, FastPredictor
    from .moderator import SELF_CHECK_TEXTS

    model_dir = Path(model_dir)
    try:
        predictor = FastPredictor(pipeline, version)
    except ValueError as exc:
        log.info("%s: no %s (%s)", model_dir, FAST_FILE, exc)
        return None
    arrays = predictor.to_arrays()
    arrays["check.texts"] = np.asarray(SELF_CHECK_TEXTS)
    arrays["check.proba"] = ModelArtifact(pipeline=pipeline).predict_proba(list(SELF_CHECK_TEXTS))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, value in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.asarray(value), allow_pickle=False)
    data = buf.getvalue()
    atomic_write_bytes(model_dir / file_name, data)
    return {"file": file_name, "sha256": hashlib.sha256(data).hexdigest(), "model_sha256": model_sha256,
            "format": ARRAYS_FORMAT}


def load_fast_arrays(model_dir: str | Path, meta: dict[str, Any]) -> dict[str, np.ndarray] | None:
    """The fast path's arrays recorded in ``meta`` (``model.json``), sha256-verified; None when the
    directory has none for this model file (older directories, or a model rewritten without them).

    Raises :class:`ModelError` naming the file when model.json lists arrays that are missing,
    unreadable or do not have the recorded sha256.
    """
    model_dir = Path(model_dir)
    entry = meta.get(FAST_META_KEY)
    if entry is None:
        return None
    meta_path = model_dir / META_FILE
    if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in ("file", "sha256")) \
            or Path(entry["file"]).name != entry["file"]:
        raise ModelError(f"{meta_path}: malformed {FAST_META_KEY!r} entry (expected a file name and its sha256)")
    if entry.get("model_sha256") != meta.get("model_sha256"):
        log.info("%s: %s was built for another model file; ignoring it", model_dir, entry["file"])
        return None
    path = model_dir / entry["file"]
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelError(f"{path}: fast-path arrays listed in {META_FILE} not found; the model directory is "
                         "incomplete (copy it whole, or retrain)") from None
    except OSError as exc:
        raise ModelError(f"{path}: cannot read fast-path arrays: {exc}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry["sha256"]:
        raise ModelError(f"{path}: sha256 {digest[:12]}... does not match {META_FILE} ({entry['sha256'][:12]}...); "
                         "the fast-path arrays were changed or corrupted")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except Exception as exc:  # zipfile and numpy raise many types on a corrupt file
        raise ModelError(f"{path}: unreadable fast-path arrays: {type(exc).__name__}: {exc}") from None


def dump_pipeline(pipeline: Pipeline, model_dir: Path) -> tuple[Path, str]:
    """Write the pipeline to a synced temporary file in ``model_dir``; return it and its sha256.

    The caller renames the file into place (or removes it on failure).
    """
    model_dir.mkdir(parents=True, exist_ok=True)
    _drop_run_state(pipeline)
    import joblib

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


def load_artifact(model_dir: str | Path = DEFAULT_MODEL_DIR, meta: dict[str, Any] | None = None) -> ModelArtifact:
    """Load and verify a model directory. Raises :class:`ModelError` with a one-line reason.

    ``meta``: the directory's metadata as read earlier by the caller (:func:`read_meta`), so that
    the pipeline loaded later is verified against the same model.json as the rest of the model.
    """
    model_dir = Path(model_dir)
    meta = read_meta(model_dir) if meta is None else meta
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
        import joblib

        pipeline = joblib.load(model_path)
    except Exception as exc:  # joblib/pickle raise many types on a corrupt file
        raise ModelError(f"{model_path}: cannot load model: {type(exc).__name__}: {exc}") from None
    if not hasattr(pipeline, "predict_proba") or set(getattr(pipeline, "classes_", ())) != set(LABELS):
        raise ModelError(f"{model_path}: not a classifier over the labels {', '.join(LABELS)}")
    log.info("loaded model %s from %s", meta.get("model_version"), model_dir)
    return ModelArtifact(pipeline=pipeline, meta=meta, directory=model_dir)


def add_fast_arrays(model_dir: str | Path = DEFAULT_MODEL_DIR) -> dict[str, Any]:
    """Give an existing model directory (written before :data:`FAST_FILE` existed, or by a tool that
    does not write it) its fast-path arrays; returns the updated metadata.

    The pipeline is verified as by :func:`load_artifact`; model.json is rewritten atomically with the
    new entry and is otherwise unchanged.
    """
    model_dir = Path(model_dir)
    meta = read_meta(model_dir)
    artifact = load_artifact(model_dir, meta=meta)
    entry = save_fast_arrays(artifact.pipeline, model_dir, meta["model_sha256"], artifact.version)
    if entry is None:
        raise ModelError(f"{model_dir}: model not supported by the fast inference path")
    meta = {**meta, FAST_META_KEY: entry}
    write_json(model_dir / META_FILE, meta)
    return meta
