"""The service state: the loaded model, the moderation policy, and the atomic swap between models.

``app.extensions["modclf"]`` is a :class:`ServiceState`. Other blueprints (integrations) classify
through :meth:`ServiceState.classify`, so every caller gets the same labels, actions and metrics.

Zero-downtime swap: a request reads ``self._model`` once and works on that object to the end, while
:meth:`ServiceState.reload` builds the new model completely (load, verify, compile the fast path,
self-check) before replacing the reference in one assignment. In-flight requests finish on the old
model; later ones see the new one; nobody sees a half-loaded model, and a model that fails to load
never replaces a working one.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..fast import FastPredictor
from ..labels import LABELS
from ..model import ModelArtifact, ModelError, load_artifact
from ..policy import Policy, PolicyError, load_policy
from ..text import normalize_text
from ..window import bounded_window
from .metrics import ServiceMetrics
from .validation import without_surrogates

log = logging.getLogger(__name__)

#: Texts used to check, at load, that the fast path agrees with scikit-learn on this model.
_SELF_CHECK = ("Thanks for the report, very helpful.", "BUY CHEAP followers at www.example.com !!!",
               "Is this confirmed by anyone?", "That is simply false, read the article again.", "")


class LoadedModel:
    """One verified model: the artifact, its fast predictor and (lazily) its feature names."""

    def __init__(self, artifact: ModelArtifact, predictor: FastPredictor, directory: Path):
        self.artifact = artifact
        self.predictor = predictor
        self.directory = directory
        self.version = artifact.version
        self.loaded_at = time.time()

    @classmethod
    def load(cls, model_dir: str | Path) -> "LoadedModel":
        """Load, verify (sha256) and self-check a model directory; raises ModelError (one line)."""
        directory = Path(model_dir)
        artifact = load_artifact(directory)
        try:
            predictor = FastPredictor.from_artifact(artifact)
        except ValueError as exc:
            raise ModelError(f"{directory}: model not supported by the fast inference path: {exc}") from None
        fast = predictor.predict_proba(list(_SELF_CHECK))
        slow = artifact.predict_proba(list(_SELF_CHECK))
        if not np.allclose(fast, slow, rtol=0, atol=1e-6):
            raise ModelError(f"{directory}: fast inference path disagrees with scikit-learn on this model")
        return cls(artifact, predictor, directory)

    @cached_property
    def _feature_names(self) -> tuple[np.ndarray, np.ndarray]:
        """(kind, n-gram) per feature column, from the FeatureUnion's ``block__ngram`` names."""
        names = self.artifact.pipeline.named_steps["features"].get_feature_names_out()
        split = np.char.partition(names.astype(str), "__")
        return split[:, 0], split[:, 2]

    def explain(self, text: str, label: str, top: int) -> dict[str, Any]:
        """The ``top`` n-grams that pushed ``label`` most, with their exact share of its logit.

        For a linear model the logit of class k is ``intercept_k + sum_j x_j * coef_kj`` where x is
        the TF-IDF row; each term is reported as it is, so the list is exact, not an approximation.
        """
        pipeline = self.artifact.pipeline
        clf = pipeline.named_steps["clf"]
        k = list(clf.classes_).index(label)
        normalized = normalize_text(text)
        row = pipeline.named_steps["features"].transform([normalized]).tocsr()
        row.sum_duplicates()
        idx, values = row.indices, row.data
        coef = clf.coef_[k]
        contributions = values * coef[idx]
        intercept = float(clf.intercept_[k])
        order = np.argsort(-contributions, kind="stable")[:top]
        kinds, ngrams = self._feature_names
        return {
            "label": label,
            "intercept": intercept,
            "logit": intercept + float(contributions.sum()),
            "normalized_text": normalized,
            "top_ngrams": [
                {
                    "ngram": str(ngrams[idx[j]]),
                    "kind": str(kinds[idx[j]]),
                    "tfidf": float(values[j]),
                    "coefficient": float(coef[idx[j]]),
                    "contribution": float(contributions[j]),
                }
                for j in order
            ],
        }


class ServiceState:
    """What the service serves: model + policy, swappable at run time without failing requests."""

    def __init__(self, model_dir: str | Path, policy_path: str | Path, *, explain_top: int = 10,
                 metrics: ServiceMetrics | None = None, window_chars: int = 10_000):
        self._lock = threading.Lock()  # serializes reloads; readers never take it
        self._model_dir = Path(model_dir)
        self._policy_path = Path(policy_path)
        self._model = LoadedModel.load(self._model_dir)
        self._policy = load_policy(self._policy_path)
        self.explain_top = explain_top
        #: longer comments are classified on a bounded window (modclf.window) and flagged truncated
        self.window_chars = window_chars
        self.metrics = metrics
        #: pid of the gunicorn master when running under gunicorn (set by gunicorn.conf.py), so an
        #: admin reload in one worker can ask the master to replace every worker.
        self.supervisor_pid: int | None = None
        if metrics is not None:
            metrics.model_swapped(None, self._model.version)

    # -- read side -------------------------------------------------------------------------------

    @property
    def model(self) -> LoadedModel:
        return self._model

    @property
    def model_version(self) -> str:
        return self._model.version

    @property
    def policy(self) -> Policy:
        return self._policy

    @property
    def model_dir(self) -> Path:
        return self._model_dir

    @property
    def policy_path(self) -> Path:
        return self._policy_path

    @property
    def ready(self) -> bool:
        return self._model is not None

    def classify(self, texts: Sequence[str], *, explain: bool = False, explain_top: int | None = None) -> list[dict[str, Any]]:
        """Classify comments; one dict per text, in order.

        Each dict: ``label``, ``confidence``, ``probabilities`` {label: p}, ``action`` (from the
        policy), ``truncated``, ``model_version``; with ``explain`` also ``explanation``. Texts must be
        strings (validated by the caller); unpaired surrogates are replaced so they cannot break
        encoding. A text longer than ``window_chars`` is classified on its bounded window
        (:func:`modclf.window.bounded_window`), reported ``truncated`` and never auto-approved.
        """
        model, policy = self._model, self._policy  # one consistent snapshot for the whole call
        if not texts:
            return []
        for text in texts:
            if not isinstance(text, str):
                raise TypeError(f"classify expects strings, got {type(text).__name__}")
        windows = [bounded_window(without_surrogates(t), self.window_chars) for t in texts]
        clean = [w.text for w in windows]
        proba = model.predictor.predict_proba(clean)
        best = proba.argmax(axis=1).tolist()
        results: list[dict[str, Any]] = []
        for row, b, window in zip(proba.tolist(), best, windows):
            probabilities = dict(zip(LABELS, row))
            label, confidence = LABELS[b], row[b]
            conditions = ("truncated",) if window.truncated else ()
            results.append({
                "label": label,
                "confidence": confidence,
                "probabilities": probabilities,
                "action": policy.action_for(label, confidence, probabilities, conditions),
                "truncated": window.truncated,
                "model_version": model.version,
            })
        if explain:
            top = explain_top or self.explain_top
            for result, text in zip(results, clean):
                result["explanation"] = model.explain(text, result["label"], top)
        if self.metrics is not None:
            self.metrics.count_predictions([r["label"] for r in results], [r["action"] for r in results])
        return results

    # -- write side ------------------------------------------------------------------------------

    def reload(self, model_dir: str | Path | None = None) -> str:
        """Swap to the model in ``model_dir`` (default: the current directory); returns its version.

        Raises :class:`ModelError` and keeps serving the old model when the new one is unusable.
        """
        with self._lock, self._counting_failures():
            directory = Path(model_dir) if model_dir is not None else self._model_dir
            new = LoadedModel.load(directory)
            self._swap(new, None, directory)
            return new.version

    def reload_policy(self, path: str | Path | None = None) -> Policy:
        """Swap to the policy file at ``path`` (default: the current one); PolicyError keeps the old."""
        with self._lock, self._counting_failures():
            policy_path = Path(path) if path is not None else self._policy_path
            policy = load_policy(policy_path)
            self._policy, self._policy_path = policy, policy_path
            return policy

    def reload_all(self) -> tuple[str, Policy]:
        """Reload model and policy from their current paths; neither is swapped unless both load."""
        with self._lock, self._counting_failures():
            new = LoadedModel.load(self._model_dir)
            policy = load_policy(self._policy_path)
            self._swap(new, policy, self._model_dir)
            return new.version, policy

    @contextmanager
    def _counting_failures(self) -> Iterator[None]:
        try:
            yield
        except (ModelError, PolicyError):
            if self.metrics is not None:
                self.metrics.reloads.labels("failed").inc()
            raise

    def _swap(self, new: LoadedModel, policy: Policy | None, directory: Path) -> None:
        old = self._model.version
        self._model, self._model_dir = new, directory  # the atomic swap: one reference assignment
        if policy is not None:
            self._policy = policy
        if self.metrics is not None:
            self.metrics.reloads.labels("ok").inc()
            self.metrics.model_swapped(old, new.version)
        log.info("now serving model %s from %s (was %s)", new.version, directory, old)
