"""The moderation decision: one trained model plus one policy, loaded once with one set of guarantees.

Everything that turns comments into actions goes through :class:`Moderator`: the HTTP service,
the Coral and Akismet integrations, batch scoring (``modclf score`` / score.py), the Dask engine
and the public Python API (:func:`modclf.load`).

Loading a model directory checks, in this order, and raises :class:`~modclf.errors.ModelError`
with a one-line reason when any check fails:

1. ``model.json`` is readable and names the model file and its sha256;
2. the model file has exactly that sha256 (a changed or truncated file is refused);
3. it unpickles to a classifier over the five labels;
4. the fast inference path (numba) compiles for it and agrees with scikit-learn on a fixed set of
   texts to 1e-6, so the fast path is only ever used where it is exact.

When the directory also holds the fast path's saved arrays (``model.fast.npz``, listed with its
sha256 in ``model.json``), they are verified and used instead of building the fast path from the
pipeline, and the fast path is checked against the probabilities scikit-learn gave for the same
reference texts when the arrays were saved. With ``lazy=True`` (batch scoring) the pipeline itself
is then unpickled only if something needs it (explanations, ``fast=False``), verified against the
same ``model.json``.

Example
-------
>>> import modclf
>>> moderator = modclf.load("model/")                      # doctest: +SKIP
>>> verdict = moderator.classify(["Thank you Iran"])[0]     # doctest: +SKIP
>>> verdict.label, verdict.action                           # doctest: +SKIP
('support', 'approve')
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

from .errors import ModelError
from .labels import LABELS
from .policy import ACTIONS, Policy, load_policy
from .window import bounded_window, cue_readings

log = logging.getLogger(__name__)

_SEVERITY = {action: i for i, action in enumerate(ACTIONS)}

#: The model's window in characters: longer comments are classified on a bounded window of
#: themselves (:func:`modclf.window.bounded_window`), reported ``truncated`` and never approved.
DEFAULT_WINDOW_CHARS = 10_000

#: Comments longer than this are also read in overlapping segments of SEGMENT_CHARS: TF-IDF rows are
#: l2-normalized, so a link drop buried in a few thousand characters of benign text is diluted below
#: every threshold when the comment is read whole. A segment that reads as spam (top label, or a
#: spam escalation of the policy) and would get a stricter action decides instead (the strictest
#: spam reading wins; bench/evasion_report.py measures it).
SEGMENT_TRIGGER = 1200
SEGMENT_CHARS = 300
SEGMENT_STEP = 250
MAX_SEGMENTS = 64

#: What a comment gets when a sentence of it that carries a link, a contact or a plug, or one of its
#: HTML anchors (:func:`modclf.window.cue_readings`), reads as spam on its own while the whole
#: comment would be approved: a plug added to an ordinary comment is diluted below every threshold
#: when the comment is read whole. Held, not rejected: the same line alone can be a cited source.
CUE_ACTION = "review"

#: Texts the fast path must agree with scikit-learn on before it is used (saved model arrays carry
#: scikit-learn's probabilities for them: modclf.model.save_fast_arrays).
SELF_CHECK_TEXTS: tuple[str, ...] = (
    "Thanks for the report, very helpful.", "BUY CHEAP followers at www.example.com !!!",
    "Is this confirmed by anyone?", "That is simply false, read the article again.", "",
    "Subscribe ➡ ｗｗｗ.ｃａｓｈ-ｆａｓｔ.ｃｏｍ or mail me: deals (at) example dot com, +1 555 010 9999 @bot_01",
    "C'est faux !!! Das stimmt nicht. Это неправда. هذا غير صحيح",
)
_SELF_CHECK = SELF_CHECK_TEXTS


_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: str) -> str:
    """Unpaired UTF-16 surrogates (legal in JSON escapes, not in Unicode text) and NUL (refused by
    PostgreSQL text columns) become U+FFFD, so any Python string can be classified and stored."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    if text.isascii():
        return text
    # json.loads already joined valid surrogate pairs, so any surrogate left is unpaired
    return _SURROGATE.sub("\ufffd", text)


@dataclass(frozen=True)
class Verdict:
    """What the moderator decided about one comment.

    Attributes
    ----------
    label : str
        The most probable label (one of :data:`modclf.labels.LABELS`).
    confidence : float
        The probability of ``label``.
    probabilities : dict[str, float]
        The probability of every label, in LABELS order; they sum to 1.
    action : str
        ``approve``, ``review`` or ``reject``, decided by the policy.
    truncated : bool
        True when the comment was longer than the model's window and was classified on a window
        of it; the policy never approves such a comment.
    language : str
        The comment's language (ISO 639-1) as :mod:`modclf.language` identifies it, ``und`` when
        it cannot tell (short texts, links only). A language the model was not trained on is
        never approved (policy floor ``unsupported_language``).
    model_version, policy_version : str
        Which model and which policy file (its sha256 prefix) decided; recorded with every action.
    explanation : dict or None
        With ``explain=True``: the n-grams that pushed ``label`` most, with their exact share of
        its logit (see :meth:`LoadedModel.explain`).
    """

    label: str
    confidence: float
    probabilities: dict[str, float]
    action: str
    truncated: bool
    language: str
    model_version: str
    policy_version: str
    explanation: dict[str, Any] | None = field(default=None)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (the service's response fields); ``explanation`` only when present."""
        out = {"label": self.label, "confidence": self.confidence, "probabilities": dict(self.probabilities),
               "action": self.action, "truncated": self.truncated, "language": self.language,
               "model_version": self.model_version, "policy_version": self.policy_version}
        if self.explanation is not None:
            out["explanation"] = self.explanation
        return out


class Prediction(NamedTuple):
    """:meth:`Moderator.predict`: per text, in order."""

    proba: np.ndarray
    truncated: list[bool]
    languages: list[str]
    #: per text: the probabilities of its most spam-like segment (long texts only), else None
    spam_segments: list[np.ndarray | None] | None = None
    #: per text whose language is ``und``: the writing system of its letters
    #: (:func:`modclf.language.dominant_script`), else None
    scripts: list[str | None] | None = None
    #: the text each prediction read (its window), for the checks made only on a comment that would
    #: be approved: its cue stretches (:func:`modclf.window.cue_readings`) and its parts' languages
    #: (:func:`modclf.language.foreign_stretch`)
    texts: list[str] | None = None


class LoadedModel:
    """One verified model directory: the exact fast predictor, the metadata, and the scikit-learn
    artifact (loaded with the model, or on first use when loaded with ``lazy=True``)."""

    def __init__(self, artifact: Any, predictor: Any, directory: Path, *, meta: dict[str, Any] | None = None):
        if artifact is None and meta is None:
            raise ValueError("LoadedModel needs the artifact or the model's metadata")
        self._artifact = artifact
        self._artifact_lock = threading.Lock()
        self.meta: dict[str, Any] = artifact.meta if meta is None else meta
        self.predictor = predictor
        self.directory = directory
        self.version: str = str(self.meta.get("model_version", "unknown"))
        self.loaded_at = time.time()
        #: languages with enough training comments (model.json); a model that does not say is
        #: taken to read English only, the safe assumption
        self.supported_languages: frozenset[str] = frozenset(
            (self.meta.get("languages") or {}).get("supported") or ("en",))

    @property
    def artifact(self) -> Any:
        """The scikit-learn artifact (pipeline + metadata). A model loaded lazily unpickles it here,
        once, verified against the model.json it was loaded with (ModelError if it no longer matches)."""
        if self._artifact is None:
            with self._artifact_lock:
                if self._artifact is None:
                    from .model import load_artifact

                    self._artifact = load_artifact(self.directory, meta=self.meta)
        return self._artifact

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_artifact_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._artifact_lock = threading.Lock()

    @classmethod
    def load(cls, model_dir: str | Path, *, fast: bool = True, lazy: bool = False) -> "LoadedModel":
        """Load, verify (sha256) and self-check a model directory; raises ModelError (one line).

        ``fast=False`` predicts with the plain scikit-learn pipeline (same numbers, ~10x slower).
        ``lazy=True``: when the directory has saved fast-path arrays, do not unpickle the pipeline
        until something needs it (a batch scorer starts in a fraction of the time).
        """
        from .model import load_artifact, load_fast_arrays, read_meta

        directory = Path(model_dir)
        meta = read_meta(directory)
        if fast:
            arrays = load_fast_arrays(directory, meta)
            model = cls._from_arrays(arrays, meta, directory) if arrays is not None else None
            if model is not None:
                if not lazy:
                    model.artifact  # noqa: B018 - verify and load it now, as before
                return model
        return cls.from_artifact(load_artifact(directory, meta=meta), directory, fast=fast)

    @classmethod
    def _from_arrays(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any], directory: Path) -> "LoadedModel | None":
        """The model from its saved fast-path arrays, checked against the probabilities scikit-learn
        gave for the reference texts when they were saved; None (build from the pipeline instead)
        when they are of another layout or disagree."""
        from .fast import FastPredictor

        try:
            predictor = FastPredictor.from_arrays(arrays, str(meta.get("model_version", "unknown")))
            texts = [str(t) for t in arrays["check.texts"]]
            expected = np.asarray(arrays["check.proba"], dtype=np.float64)
        except (KeyError, ValueError) as exc:
            log.info("%s: saved fast-path arrays not used (%s); building the fast path from the pipeline", directory, exc)
            return None
        got = predictor.predict_proba(texts)
        if not texts or got.shape != expected.shape or not np.allclose(got, expected, rtol=0, atol=1e-6):
            log.warning("%s: saved fast-path arrays disagree with the probabilities scikit-learn gave when they were "
                        "saved; building the fast path from the pipeline", directory)
            return None
        return cls(None, predictor, directory, meta=meta)

    @classmethod
    def from_artifact(cls, artifact: Any, directory: Path, *, fast: bool = True) -> "LoadedModel":
        """Wrap a loaded (and verified) artifact: compile and self-check the fast path."""
        from .fast import FastPredictor

        if not fast:
            return cls(artifact, artifact, directory)
        try:
            predictor = FastPredictor.from_artifact(artifact)
        except ValueError as exc:
            raise ModelError(f"{directory}: model not supported by the fast inference path: {exc}") from None
        fast = predictor.predict_proba(list(SELF_CHECK_TEXTS))
        slow = artifact.predict_proba(list(SELF_CHECK_TEXTS))
        if not np.allclose(fast, slow, rtol=0, atol=1e-6):
            raise ModelError(f"{directory}: fast inference path disagrees with scikit-learn on this model")
        return cls(artifact, predictor, directory)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities, columns in LABELS order (the fast path; equal to scikit-learn's)."""
        return self.predictor.predict_proba(texts)

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
        from .text import normalize_text

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


def policy_version(policy: Policy) -> str:
    """A short, stable name for a policy: its file's sha256 prefix (``"inline"`` when built in code)."""
    return policy.sha256[:12] if policy.sha256 else "inline"


class Moderator:
    """A model and a policy: comments in, :class:`Verdict` objects out.

    Parameters
    ----------
    model : LoadedModel
        A verified model (:meth:`LoadedModel.load`).
    policy : Policy
        A validated moderation policy (:func:`modclf.policy.load_policy`).
    window_chars : int, default 10,000
        Comments longer than this are classified on a bounded window and never approved.

    Use :func:`modclf.load` (or :meth:`Moderator.load`) rather than building one by hand. A
    Moderator is immutable and safe to share between threads; to change model or policy, load a
    new one (the service swaps the reference atomically).
    """

    def __init__(self, model: LoadedModel, policy: Policy, *, window_chars: int = DEFAULT_WINDOW_CHARS):
        if window_chars < 1:
            raise ValueError("window_chars must be at least 1")
        self.model = model
        self.policy = policy
        self.window_chars = window_chars
        self.policy_version = policy_version(policy)
        from .language import LATIN, SCRIPTS

        #: languages whose comments may be approved: trained on, and trusted by the policy
        self.trusted_languages: frozenset[str] = model.supported_languages if policy.languages is None else (
            model.supported_languages & frozenset(policy.languages))
        self._trusted_scripts = frozenset(SCRIPTS.get(lang, LATIN) for lang in self.trusted_languages)

    @classmethod
    def load(cls, model_dir: str | Path | None = None, policy: str | Path | Policy | None = None, *,
             window_chars: int = DEFAULT_WINDOW_CHARS) -> "Moderator":
        """Load ``model_dir`` (default: the settings' model directory) and ``policy`` (a path or a
        Policy; default: the settings' policy, else the shipped one). Raises ModelError / PolicyError."""
        from .settings import load_settings

        settings = load_settings() if model_dir is None or policy is None else None
        model = LoadedModel.load(model_dir if model_dir is not None else settings.model_dir)  # type: ignore[union-attr]
        if not isinstance(policy, Policy):
            policy = load_policy(policy if policy is not None else settings.policy)  # type: ignore[union-attr]
        return cls(model, policy, window_chars=window_chars)

    @property
    def version(self) -> str:
        """The model's version (``model.json``'s ``model_version``)."""
        return self.model.version

    def predict(self, texts: Sequence[str]) -> Prediction:
        """What the model reads in each text: probabilities (LABELS order) of its window, whether it
        was truncated, and its language (ISO 639-1, or ``und`` when it cannot be told reliably)."""
        from .language import UNDETERMINED, detect, dominant_script

        windows = [bounded_window(clean_text(t), self.window_chars) for t in texts]
        if not windows:
            return Prediction(np.zeros((0, len(LABELS))), [], [])
        proba = self.model.predict_proba([w.text for w in windows])
        languages: list[str] = []
        scripts: list[str | None] = []
        for w in windows:
            detection = detect(w.text)
            languages.append(detection.lang if detection.reliable else UNDETERMINED)
            scripts.append(None if detection.reliable else dominant_script(w.text))
        return Prediction(proba, [w.truncated for w in windows], languages,
                          self._spam_segments([w.text for w in windows]), scripts, [w.text for w in windows])

    def _spam_segments(self, texts: Sequence[str]) -> list[np.ndarray | None]:
        """For each text longer than SEGMENT_TRIGGER, the probabilities of its most spam-like segment."""
        owners: list[int] = []
        segments: list[str] = []
        for i, text in enumerate(texts):
            if len(text) <= SEGMENT_TRIGGER:
                continue
            starts = range(0, len(text) - SEGMENT_CHARS + SEGMENT_STEP, SEGMENT_STEP)
            step = max(1, -(-len(starts) // MAX_SEGMENTS))  # spread at most MAX_SEGMENTS over the text
            for start in list(starts)[::step]:
                owners.append(i)
                segments.append(text[start:start + SEGMENT_CHARS])
        return self._most_spam_like(len(texts), owners, segments)

    def _most_spam_like(self, n: int, owners: list[int], segments: list[str]) -> list[np.ndarray | None]:
        """Per owner 0..n-1, the probabilities of its segment with the highest p(spam) (one model call)."""
        out: list[np.ndarray | None] = [None] * n
        if segments:
            spam = LABELS.index("spam")
            for owner, row in zip(owners, self.model.predict_proba(segments)):
                best = out[owner]
                if best is None or row[spam] > best[spam]:
                    out[owner] = row
        return out

    def conditions(self, truncated: bool, language: str, script: str | None = None) -> tuple[str, ...]:
        """The policy floor conditions of one comment (see policy.yaml, ``floors``).

        ``script``: for an undetermined language, the writing system of the comment's letters. Such
        a comment is judged on its text alone when it could be in a trusted language (no letters,
        or the script of one), and is ``unsupported_language`` otherwise ("Нет." under a policy
        trusting only languages written in Latin letters)."""
        out = ("truncated",) if truncated else ()
        if language != "und":
            if language not in self.trusted_languages:
                out += ("unsupported_language",)
        elif script is not None and script not in self._trusted_scripts:
            out += ("unsupported_language",)
        return out

    def decide(self, prediction: Prediction) -> list[Verdict]:
        """Turn a :meth:`predict` result into verdicts with this moderator's policy."""
        proba = prediction.proba
        segments = prediction.spam_segments or [None] * len(proba)
        scripts = prediction.scripts or [None] * len(proba)
        texts = prediction.texts or [None] * len(proba)
        readings = []
        for row, cut, language, segment, script in zip(proba, prediction.truncated, prediction.languages, segments,
                                                       scripts):
            conditions = self.conditions(cut, language, script)
            reading = self._reading(row, conditions)
            if segment is not None and self._spam_signal(segment):
                spam_reading = self._reading(segment, conditions)
                if _SEVERITY[spam_reading[3]] > _SEVERITY[reading[3]]:  # the strictest spam reading wins
                    reading = spam_reading
            readings.append((reading, conditions))
        # What only a comment about to be approved needs: its link, contact and plug sentences read on
        # their own (one model call for the batch), and its parts' languages.
        owners: list[int] = []
        stretches: list[str] = []
        overflowing: set[int] = set()
        for i, ((reading, _), text) in enumerate(zip(readings, texts)):
            if reading[3] == "approve" and text is not None:
                found = cue_readings(text, MAX_SEGMENTS)
                if found.overflow:
                    overflowing.add(i)
                for stretch in found.stretches:
                    owners.append(i)
                    stretches.append(stretch)
        cues = self._most_spam_like(len(readings), owners, stretches)
        out = []
        for i, (((label, confidence, probabilities, action), conditions), cue, text, cut, language) in enumerate(zip(
                readings, cues, texts, prediction.truncated, prediction.languages)):
            if action == "approve" and i in overflowing:
                action = CUE_ACTION  # more cue sentences than are read alone: a moderator reads it
            if cue is not None and action == "approve" and self._spam_signal(cue):
                # a link line read alone can be a cited source that merely looks like a plug: it holds
                # the comment for a moderator, it never rejects it (CUE_ACTION)
                label, confidence, probabilities, _ = self._reading(cue, conditions)
                action = CUE_ACTION
            if action == "approve" and text is not None and "unsupported_language" not in conditions \
                    and self.foreign_part(text) is not None:
                # part of it is in a language the model does not read: the floor of the whole comment
                conditions += ("unsupported_language",)
                action = self.policy.action_for(label, confidence, probabilities, conditions)
            out.append(Verdict(label, confidence, probabilities, action, bool(cut), language, self.model.version,
                               self.policy_version))
        return out

    def foreign_part(self, text: str) -> str | None:
        """The language (or script) of a part of ``text`` that is in none of the trusted languages,
        else None (:func:`modclf.language.foreign_stretch`): such a comment gets the
        ``unsupported_language`` floor even when the comment as a whole reads as English."""
        from .language import foreign_stretch

        return foreign_stretch(text, self.trusted_languages, self._trusted_scripts)

    def _reading(self, row: np.ndarray, conditions: tuple[str, ...]) -> tuple[str, float, dict[str, float], str]:
        values = row.tolist()
        b = int(np.argmax(row))
        probabilities = dict(zip(LABELS, values))
        return LABELS[b], values[b], probabilities, self.policy.action_for(LABELS[b], values[b], probabilities, conditions)

    def _spam_signal(self, row: np.ndarray) -> bool:
        """Spam is the top label of ``row``, or its p(spam) reaches a spam escalation of the policy."""
        p = float(row[LABELS.index("spam")])
        return int(np.argmax(row)) == LABELS.index("spam") or any(
            e.label == "spam" and p >= e.at_least for e in self.policy.escalations)

    def classify(self, texts: Sequence[str], *, explain: bool = False, explain_top: int = 10) -> list[Verdict]:
        """Classify comments and decide what to do with each; one :class:`Verdict` per text, in order.

        Parameters
        ----------
        texts : sequence of str
            The comments. Any length: a comment longer than ``window_chars`` is classified on a
            bounded window of itself and reported ``truncated``. Unpaired surrogates and NUL are
            replaced, so any Python string is accepted.
        explain : bool, default False
            Also return the n-grams that pushed the predicted label most (slower: uses
            scikit-learn for the feature names).
        explain_top : int, default 10
            How many n-grams an explanation lists.

        Raises
        ------
        TypeError
            When an item of ``texts`` is not a string (a programming error, not bad input).
        """
        if isinstance(texts, str):
            raise TypeError("classify expects a sequence of strings, not one string: wrap it in a list")
        if isinstance(texts, Mapping):
            raise TypeError("classify expects a sequence of strings, not a mapping (its keys would be classified)")
        texts = list(texts)  # a generator would be used up by the check below and classified as nothing
        for text in texts:
            if not isinstance(text, str):
                raise TypeError(f"classify expects strings, got {type(text).__name__}")
        verdicts = self.decide(self.predict(texts))
        if explain:
            windows = [bounded_window(clean_text(t), self.window_chars).text for t in texts]
            verdicts = [Verdict(**{**asdict(v), "explanation": self.model.explain(w, v.label, explain_top)})
                        for v, w in zip(verdicts, windows)]
        return verdicts

    def warm_up(self) -> None:
        """Load what the first classification would otherwise load on demand (the language
        identifier's model, the compiled kernels), so that a server does it once before forking its
        workers instead of stalling each worker's first requests (p99 of a fresh server x15)."""
        self.classify(["Warm-up: is this comment about the ceasefire a question? " + "x" * (SEGMENT_TRIGGER + 1)])

    def __repr__(self) -> str:
        return f"Moderator(model={self.version!r}, policy={self.policy_version!r}, window_chars={self.window_chars})"


def load(model_dir: str | Path | None = None, policy: str | Path | Policy | None = None, *,
         window_chars: int = DEFAULT_WINDOW_CHARS) -> Moderator:
    """Load a :class:`Moderator`: ``modclf.load("model/").classify(["..."])``.

    ``model_dir`` defaults to ``$MODCLF_MODEL_DIR`` or ``./model``; ``policy`` to
    ``$MODCLF_POLICY`` or the policy shipped with the package.
    """
    return Moderator.load(model_dir, policy, window_chars=window_chars)
