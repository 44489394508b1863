"""Training and evaluation workflows behind ``train.py``."""

from __future__ import annotations

import datetime as _dt
import logging
import platform
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from tqdm.auto import tqdm

from . import __version__
from .data import DataError, read_labeled, read_many, row_weights
from .evaluation import compare_line, compute_metrics, format_report, save_confusion_png
from .labels import LABELS
from .settings import DEFAULT_DATA
from .model import (
    DEPLOYMENT_PRIOR,
    META_FILE,
    ModelArtifact,
    build_baseline,
    fit_model,
    load_artifact,
    save_artifact,
    sha256_file,
    write_json,
)

log = logging.getLogger(__name__)

CONFUSION_PNG = "confusion_matrix.png"


def library_versions() -> dict[str, str]:
    import joblib
    import scipy
    import sklearn

    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "pandas": pd.__version__,
        "joblib": joblib.__version__,
        "modclf": __version__,
    }


def data_fingerprint(paths: Sequence[str | Path]) -> dict[str, str]:
    return {str(p): sha256_file(p) for p in paths}


def cross_validate(
    fit: Callable[..., Pipeline],
    texts: Sequence[str],
    labels: Sequence[str],
    folds: int,
    seed: int,
    desc: str,
    progress: bool = True,
    weights: Sequence[int] | None = None,
) -> np.ndarray:
    """Stratified k-fold out-of-fold predictions, one fold at a time with a progress bar.

    Folds split rows, not their weighted copies: ``fit(texts, labels)`` gets the training rows'
    ``weights`` as a third argument when they are given, and every held-out row is predicted once.
    """
    y = np.asarray(labels)
    X = np.asarray(texts, dtype=object)
    w = None if weights is None else np.asarray(weights)
    pred = np.empty(len(y), dtype=object)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train_idx, test_idx in tqdm(
        list(splitter.split(X, y)), desc=desc, unit="fold", disable=not progress, leave=False
    ):
        model = fit(X[train_idx], y[train_idx]) if w is None else fit(X[train_idx], y[train_idx], w[train_idx])
        pred[test_idx] = model.predict(X[test_idx])
    return pred


def train(
    data_paths: Sequence[str | Path],
    model_dir: str | Path,
    seed: int = 0,
    folds: int = 5,
    progress: bool = True,
    report: Callable[[str], None] = print,
    min_per_label: int | None = None,
) -> dict[str, Any]:
    """Cross-validate the model and the naive baseline, fit on all data, and save the artifact."""
    model_dir = Path(model_dir)
    df = read_many(data_paths, min_per_label=min_per_label or max(folds, 2))
    if folds == 1 or folds < 0:
        raise DataError("--folds must be 0 (no cross-validation) or at least 2")
    texts, labels = df["text"].tolist(), df["label"].tolist()
    weights = row_weights(df)
    n_rows = len(df)
    report(f"training on {n_rows} comments from {', '.join(str(p) for p in data_paths)}")
    if any(k != 1 for k in weights):
        report(f"weights: {sum(k != 1 for k in weights)} rows count more than once ({sum(weights)} weighted rows)")
    weighted = weights if any(k != 1 for k in weights) else None
    report("label counts: " + ", ".join(f"{label} {int((df['label'] == label).sum())}" for label in LABELS))
    del df  # its other columns (ids, topics, ...) are a few hundred MB on a million rows

    metrics: dict[str, Any] = {}
    if folds >= 2:
        cv_pred = cross_validate(lambda tx, ty, tw=None: fit_model(tx, ty, seed, tw), texts, labels, folds, seed,
                                 "cross-validating model", progress, weights=weighted)
        cv = compute_metrics(labels, cv_pred)
        base_pred = cross_validate(lambda tx, ty: build_baseline(seed).fit(tx, ty), texts, labels, folds, seed, "cross-validating baseline", progress)
        base = compute_metrics(labels, base_pred)
        report(format_report(cv, f"{folds}-fold stratified cross-validation (seed {seed})"))
        report(compare_line("model", cv, "baseline", base))
        metrics["cross_validation"] = {"folds": folds, "model": cv, "baseline": base}
    else:
        report("cross-validation skipped (--folds 0)")

    with tqdm(total=1, desc="fitting final model", disable=not progress, leave=False) as bar:
        pipeline = fit_model(texts, labels, seed, weighted)
        bar.update()
    meta = build_meta(pipeline, data_paths, texts, seed, metrics,
                      training_extra={"weighted_rows": sum(weights)} if weighted is not None else None)
    meta = save_artifact(pipeline, meta, model_dir)
    saved = [str(model_dir / "model.joblib"), str(model_dir / META_FILE)]
    if "cross_validation" in metrics:
        saved.append(str(save_confusion_png(metrics["cross_validation"]["model"], model_dir / CONFUSION_PNG,
                                            f"{folds}-fold CV on {n_rows} comments")))
    report(f"saved {', '.join(saved)} (model sha256 {meta['model_sha256'][:12]}...)")
    return meta


#: A language counts as one the model was trained on (``model.json`` ``languages.supported``) with
#: at least this many training comments detected in it; comments in other languages are never
#: auto-approved (policy floor ``unsupported_language``).
MIN_LANGUAGE_ROWS = 100


def language_profile(texts: Sequence[str]) -> dict[str, Any]:
    """Detected languages of the training texts: counts, and the ones with enough rows to trust."""
    from .language import UNDETERMINED, detect_many

    counts: dict[str, int] = {}
    for detection in detect_many(texts):
        lang = detection.lang if detection.reliable else UNDETERMINED
        counts[lang] = counts.get(lang, 0) + 1
    counts = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    supported = sorted(lang for lang, n in counts.items() if lang != UNDETERMINED and n >= MIN_LANGUAGE_ROWS)
    return {"counts": counts, "supported": supported, "min_rows": MIN_LANGUAGE_ROWS}


def build_meta(pipeline: Pipeline, data_paths: Sequence[str | Path], texts: Sequence[str], seed: int,
               metrics: dict[str, Any], *, extra_sha: Sequence[str] = (), version_suffix: str = "",
               training_extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """model.json for a fitted pipeline: the one place it is built (train.py and retraining).

    No timestamps or paths that differ between two identical runs go into what the version is
    computed from; ``trained_at`` is informational.
    """
    digests = data_fingerprint(data_paths)
    combined = sha256_of_strings(sorted(digests.values()) + list(extra_sha))
    return {
        "model_version": f"{__version__}+{combined[:12]}.s{seed}{version_suffix}",
        "labels": list(LABELS),
        "trained_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "training_data": {"files": digests, "sha256": combined, "rows": len(texts), **(training_extra or {})},
        "languages": language_profile(texts),
        "seed": seed,
        "libraries": library_versions(),
        "pipeline": describe_pipeline(pipeline),
        "metrics": metrics,
        "evaluations": {},
    }


def sha256_of_strings(parts: Sequence[str]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def describe_pipeline(pipeline: Pipeline) -> dict[str, Any]:
    clf = pipeline.named_steps["clf"]
    union = pipeline.named_steps["features"]
    return {
        "steps": [name for name, _ in pipeline.steps],
        "features": {name: len(vec.vocabulary_) for name, vec in union.transformer_list},
        "classifier": {"type": type(clf).__name__, "C": clf.C, "class_weight": clf.class_weight,
                       "deployment_prior": DEPLOYMENT_PRIOR},
    }


def evaluate(
    eval_path: str | Path,
    model_dir: str | Path,
    data_paths: Sequence[str | Path] | None = None,
    record: bool = True,
    report: Callable[[str], None] = print,
    png_path: str | Path | None = None,
    policy_path: str | Path | None = None,
    sweep: str | None = None,
) -> dict[str, Any]:
    """Evaluate the saved model on a labeled CSV, beside the naive baseline trained on the same corpus.

    Besides the labels it measures the moderation decisions the policy (``policy_path``, default
    :func:`modclf.policy.default_policy_path`) makes from the predictions, per ``source`` when the
    file has that column, and the calibration of the probabilities. A comment longer than
    :data:`modclf.evaluation.WINDOW_CHARS` is classified on its bounded window and decided as
    ``truncated``, as the service does. With ``png_path`` the confusion matrix is saved there and the
    reliability diagram beside it (``<stem>_reliability.png``).

    With ``sweep`` (a label) the model's decisions are also reported with the policy's escalation on
    that label's probability moved through :data:`modclf.evaluation.SWEEP_THRESHOLDS` (the
    trade-off between comments held and comments of that label approved; stored under ``sweep``).

    With ``record`` the result is stored under ``evaluations`` in ``model.json`` (keyed by file name),
    which does not change the model file or its checksum.
    """
    from .evaluation import (
        WINDOW_CHARS,
        calibration_metrics,
        compare_decisions_line,
        decision_metrics,
        escalation_sweep,
        format_decisions,
        format_sweep,
        proba_in_label_order,
        save_reliability_png,
    )
    from .policy import default_policy_path, load_policy
    from .window import bounded_window

    eval_path = Path(eval_path)
    artifact: ModelArtifact = load_artifact(model_dir)
    policy = load_policy(policy_path if policy_path is not None else default_policy_path())
    df = read_labeled(eval_path)
    if df.empty:  # the metrics below need at least one comment (scikit-learn's error is a traceback)
        raise DataError(f"{eval_path}: no data rows (only a header); nothing to evaluate")
    y_true = df["label"].tolist()
    # decided exactly as the service decides: the Moderator's window, language and policy floors
    from .moderator import LoadedModel, Moderator

    moderator = Moderator(LoadedModel.from_artifact(artifact, Path(model_dir), fast=False), policy,
                          window_chars=WINDOW_CHARS)
    windows = [bounded_window(text, WINDOW_CHARS) for text in df["text"].tolist()]
    texts = [w.text for w in windows]
    prediction = moderator.predict(df["text"].tolist())
    truncated = prediction.truncated
    conditions = [moderator.conditions(cut, lang, script) for cut, lang, script in
                  zip(prediction.truncated, prediction.languages, prediction.scripts or [None] * len(df))]
    sources = df["source"].tolist() if "source" in df.columns else None
    proba = prediction.proba
    pred = np.asarray(LABELS)[proba.argmax(axis=1)]
    result = compute_metrics(y_true, pred)
    report(format_report(result, f"model {artifact.version} on {eval_path}"))
    # the service's own decisions: the policy plus the readings of cue sentences, spam segments and
    # foreign parts (the naive baseline below gets the policy alone: it has no Moderator)
    actions = [v.action for v in moderator.decide(prediction)]
    decisions = {"model": decision_metrics(y_true, proba, policy, truncated, sources, conditions, actions)}
    if "lang" in df.columns:
        by_language = decision_metrics(y_true, proba, policy, truncated, df["lang"].tolist(), conditions, actions)
        decisions["model_by_language"] = by_language
    calibration = {"model": calibration_metrics(y_true, proba)}

    out: dict[str, Any] = {"file": str(eval_path), "sha256": sha256_file(eval_path), "model": result}
    corpus = [Path(p) for p in (data_paths or artifact.meta.get("training_data", {}).get("files", {}) or [DEFAULT_DATA])]
    corpus = [p for p in corpus if p.is_file()]
    if corpus:
        train_df = read_many(corpus)
        baseline = build_baseline(artifact.meta.get("seed", 0)).fit(train_df["text"].tolist(), train_df["label"].tolist())
        base = compute_metrics(y_true, baseline.predict(texts))
        out["baseline"] = base
        report(compare_line("model", result, "baseline", base))
        base_proba = proba_in_label_order(baseline.predict_proba(texts), baseline.classes_)
        decisions["baseline"] = decision_metrics(y_true, base_proba, policy, truncated, sources, conditions)
        calibration["baseline"] = calibration_metrics(y_true, base_proba)
    else:
        report("baseline skipped: training corpus not found")
    policy_name = Path(policy.source).name if policy.source else "policy"
    report("")
    report(format_decisions(decisions["model"], f"decisions of model {artifact.version} under {policy_name} "
                            f"on {eval_path.name}", calibration["model"]))
    if "model_by_language" in decisions:
        report("")
        report(format_decisions(decisions["model_by_language"], f"the same decisions by the file's lang column "
                                f"(model languages: {', '.join(sorted(moderator.model.supported_languages))})"))
    if "baseline" in decisions:
        report("")
        report(format_decisions(decisions["baseline"], f"decisions of the naive baseline under {policy_name} "
                                f"on {eval_path.name}", calibration["baseline"]))
        report("")
        report(compare_decisions_line("model", decisions["model"], "baseline", decisions["baseline"],
                                      calibration["model"], calibration["baseline"]))
    if sweep is not None:
        rows = escalation_sweep(y_true, proba, policy, sweep, truncated=truncated, conditions=conditions)
        report("")
        report(format_sweep(rows, sweep, f"decisions of model {artifact.version} on {eval_path.name} with the "
                            f"escalation on p({sweep}) moved"))
        out["sweep"] = {"label": sweep, "rows": rows}
    out["policy"] = {"file": policy_name, "sha256": policy.sha256}
    out["decisions"] = decisions
    out["calibration"] = calibration
    if png_path:
        save_confusion_png(result, png_path, f"{artifact.version} on {eval_path.name}")
        png = Path(png_path)
        reliability = save_reliability_png(calibration["model"], png.with_name(f"{png.stem}_reliability.png"),
                                           f"{artifact.version} on {eval_path.name}", calibration.get("baseline"))
        report(f"saved {png} and {reliability}")
    if record:
        meta = dict(artifact.meta)
        meta.setdefault("evaluations", {})[eval_path.name] = {
            **out,
            "evaluated_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        write_json(Path(model_dir) / META_FILE, meta)
        report(f"recorded in {Path(model_dir) / META_FILE} under evaluations/{eval_path.name}")
    return out


__all__ = ["train", "evaluate", "cross_validate", "DataError"]
