"""Retraining with moderators' decisions: ``python train.py --with-feedback [--feedback-db URL]``.

1. Merge: the labeled corpus plus every decision in the feedback store. A decision overrides the
   corpus label of every corpus row with the same text (compared with Unicode NFC and runs of
   whitespace collapsed); a decision on a text the corpus lacks adds a row. A ``ham`` decision
   (Akismet submit-ham: "not spam", no class given) keeps a non-spam corpus label, and otherwise
   takes the current model's most probable non-spam label.
2. Split the merged rows once, stratified by label (20 % held out, ``seed``).
3. Train a candidate on the rest, and a reference on the same rest without the feedback (corpus
   rows, corpus labels); evaluate both on the same held-out rows, whose labels include the
   moderators' corrections; print both reports (and the current model's, for information: it was
   trained on most of the held-out rows, so it is no fair bar).
4. Promote the candidate only if its macro-F1 is not lower than the reference's. The promoted
   artifact is the candidate that was evaluated (not a refit), written so that a running service
   that reloads (``POST /v1/admin/reload`` or ``kill -HUP`` on the gunicorn master) sees either the
   old model or the new one, never a mix: see :func:`promote`.

Returns True when promoted (train.py exits 0) and False when refused (exit 3); bad data or a
missing store raise DataError (exit 2).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from tqdm.auto import tqdm

from .data import WEIGHT_COLUMN, DataError, check_label_counts, read_many, row_weights
from .evaluation import compare_line, compute_metrics, format_report
from .feedback import HAM, Decision, FeedbackError, FeedbackStore, resolve_db_url
from .atomic import fsync_dir
from .labels import LABELS
from .model import (FAST_FILE, FAST_META_KEY, META_FILE, MODEL_FILE, ModelArtifact, ModelError, dump_pipeline, fit_model,
                    VERSIONED_MODEL, link_or_copy, load_artifact, read_meta, save_fast_arrays, write_json)
from .training import build_meta

log = logging.getLogger(__name__)

HELDOUT_FRACTION = 0.2


def text_key(text: str) -> str:
    """What "the same text" means when a decision overrides the corpus: the corpus's own dedup key
    (:func:`modclf.text.dedup_key`: the model cannot tell two such texts apart, so they must not
    carry different labels)."""
    from .text import dedup_key

    return dedup_key(text)


def merge_decisions(corpus: pd.DataFrame, decisions: Sequence[Decision],
                    non_spam_label: Callable[[list[str]], list[str]] | None) -> tuple[pd.DataFrame, dict[str, int]]:
    """Corpus rows (text, label, weight) with the decisions applied; also counts of what happened.

    ``non_spam_label`` gives the most probable non-spam label of texts (for ``ham`` decisions); when
    None (no current model) a ham decision on a text without a non-spam corpus label is an error,
    since it cannot be turned into a label without guessing.
    """
    df = corpus[["text", "label"]].copy()
    df[WEIGHT_COLUMN] = row_weights(corpus)  # a relabeled row keeps its weight; added rows count once
    keys = df["text"].map(text_key)
    final: dict[str, tuple[str, str]] = {}  # key -> (text, label); later decisions are newer
    for d in sorted(decisions, key=lambda d: d.updated_at):
        final[text_key(d.text)] = (d.text, d.label)
    ham_keys = [k for k, (_, label) in final.items() if label == HAM]
    if ham_keys:
        corpus_label = dict(zip(keys, df["label"]))
        unresolved = [k for k in ham_keys if corpus_label.get(k) in (None, "spam")]
        if unresolved:
            if non_spam_label is None:
                raise DataError(f"{len(unresolved)} 'ham' decision(s) need the current model to choose their "
                                "non-spam label, and there is no current model; train one first")
            for k, label in zip(unresolved, non_spam_label([final[k][0] for k in unresolved])):
                final[k] = (final[k][0], label)
        for k in ham_keys:
            if final[k][1] == HAM:  # the corpus already has a non-spam label for it: keep that
                final[k] = (final[k][0], corpus_label[k])
    overridden = keys.isin(final.keys())
    changed = int((overridden & (df["label"] != keys.map(lambda k: final.get(k, ("", ""))[1]))).sum())
    df.loc[overridden, "label"] = keys[overridden].map(lambda k: final[k][1])
    present = set(keys)
    added = [(text, label) for k, (text, label) in final.items() if k not in present]
    if added:
        df = pd.concat([df, pd.DataFrame([(text, label, 1) for text, label in added],
                                         columns=["text", "label", WEIGHT_COLUMN])], ignore_index=True)
    stats = {"decisions": len(decisions), "distinct_texts": len(final), "corpus_rows_relabeled": changed,
             "corpus_rows_confirmed": int(overridden.sum()) - changed, "rows_added": len(added),
             "ham_decisions": len(ham_keys)}
    return df.reset_index(drop=True), stats


def _non_spam_labeler(artifact: ModelArtifact) -> Callable[[list[str]], list[str]]:
    others = [i for i, label in enumerate(LABELS) if label != "spam"]

    def label(texts: list[str]) -> list[str]:
        proba = artifact.predict_proba(texts)[:, others]
        return [LABELS[others[i]] for i in proba.argmax(axis=1)]

    return label


def _read_decisions(db_url: str) -> list[Decision]:
    store = FeedbackStore(db_url)
    path = store.sqlite_path()
    if store.is_sqlite and (path is None or not path.is_file()):
        raise DataError(f"feedback store {store.url}: no such database file (check --feedback-db or $MODCLF_FEEDBACK_DB)")
    try:
        return store.decisions()
    except FeedbackError as exc:
        raise DataError(str(exc)) from None
    finally:
        store.close()


def retrain_with_feedback(data_paths: Sequence[str | Path], model_dir: str | Path, db_url: str | None = None,
                          seed: int = 0, progress: bool = True, report: Callable[[str], None] = print) -> bool:
    """Merge feedback, train a candidate, compare with the current model, promote if not worse."""
    model_dir = Path(model_dir)
    url = resolve_db_url(db_url)
    corpus = read_many(data_paths)
    decisions = _read_decisions(url)
    current: ModelArtifact | None
    try:
        current = load_artifact(model_dir)
    except ModelError as exc:
        current = None
        report(f"no usable current model in {model_dir} ({exc}); the candidate is promoted if it trains")
    merged, stats = merge_decisions(corpus, decisions, _non_spam_labeler(current) if current is not None else None)
    report(f"feedback: {stats['decisions']} decision(s) from {FeedbackStore(url).url}: "
           f"{stats['corpus_rows_relabeled']} corpus row(s) relabeled, {stats['corpus_rows_confirmed']} confirmed, "
           f"{stats['rows_added']} row(s) added ({stats['ham_decisions']} ham)")
    check_label_counts(merged, 2, "merged corpus and feedback")
    texts = merged["text"].to_numpy(dtype=object)
    labels = merged["label"].to_numpy(dtype=object)
    weights = merged[WEIGHT_COLUMN].to_numpy()
    try:
        train_idx, test_idx = train_test_split(np.arange(len(merged)), test_size=HELDOUT_FRACTION, random_state=seed,
                                               stratify=labels)
    except ValueError as exc:
        raise DataError(f"merged data too small for a stratified held-out split: {exc}") from None
    report(f"training the candidate on {len(train_idx)} rows; held out: {len(test_idx)} rows (seed {seed})")
    with tqdm(total=1, desc="fitting candidate", disable=not progress, leave=False) as bar:
        candidate = fit_model(list(texts[train_idx]), list(labels[train_idx]), seed, list(weights[train_idx]))
        bar.update()
    y_true = list(labels[test_idx])
    held_texts = list(texts[test_idx])
    cand = compute_metrics(y_true, list(candidate.predict(held_texts)))
    report(format_report(cand, f"candidate on the held-out split ({len(test_idx)} rows)"))
    # The bar: the same recipe fit on the same training rows without the feedback (corpus rows with
    # their corpus labels; merged rows [0, len(corpus)) are the corpus in order). The current model
    # itself cannot be the bar: it was fit on most of the held-out rows, so it scores its training
    # data (0.94 against an honest candidate's 0.82 on the shipped corpus) and nothing is promoted.
    ref_idx = train_idx[train_idx < len(corpus)]
    corpus_labels = corpus["label"].to_numpy(dtype=object)
    with tqdm(total=1, desc="fitting reference", disable=not progress, leave=False) as bar:
        reference = fit_model(list(texts[ref_idx]), list(corpus_labels[ref_idx]), seed, list(weights[ref_idx]))
        bar.update()
    ref = compute_metrics(y_true, list(reference.predict(held_texts)))
    report(format_report(ref, f"the same training without the feedback ({len(ref_idx)} rows) on the same held-out split"))
    report(compare_line("candidate", cand, "without feedback", ref))
    cur = None
    if current is not None:
        pred = np.asarray(LABELS)[current.predict_proba(held_texts).argmax(axis=1)]
        cur = compute_metrics(y_true, list(pred))
        report(f"current model {current.version} on the same held-out split: macro-F1 {cur['macro_f1']:.4f} "
               "(shown, not compared: it was trained on most of these rows)")
    if cand["macro_f1"] < ref["macro_f1"]:
        report(f"refused: candidate macro-F1 {cand['macro_f1']:.4f} < {ref['macro_f1']:.4f} without the feedback; "
               f"{model_dir} is unchanged")
        return False
    meta = _candidate_meta(candidate, data_paths, decisions, stats, list(texts[train_idx]), seed, cand, ref, cur,
                           current.version if current is not None else None, url)
    meta = promote(candidate, meta, model_dir)
    verdict = f"candidate {cand['macro_f1']:.4f} >= {ref['macro_f1']:.4f} without the feedback"
    report(f"promoted model {meta['model_version']} to {model_dir} ({verdict}); running services pick it up on "
           "POST /v1/admin/reload or kill -HUP <gunicorn master pid>")
    return True


def _candidate_meta(pipeline: Pipeline, data_paths: Sequence[str | Path], decisions: Sequence[Decision],
                    stats: dict[str, int], texts: Sequence[str], seed: int, cand: dict[str, Any],
                    ref: dict[str, Any], cur: dict[str, Any] | None, previous: str | None, url: str) -> dict[str, Any]:
    feedback_sha = hashlib.sha256("\n".join(
        f"{d.id}\x1f{d.label}\x1f{d.text}" for d in sorted(decisions, key=lambda d: d.id)).encode("utf-8")).hexdigest()
    metrics = {"retrain_heldout": {"fraction": HELDOUT_FRACTION, "candidate": cand, "without_feedback": ref,
                                   "current": cur, "previous_version": previous}}
    return build_meta(pipeline, data_paths, texts, seed, metrics, extra_sha=[feedback_sha], version_suffix=".fb",
                      training_extra={"feedback": {**stats, "sha256": feedback_sha, "store": FeedbackStore(url).url}})


def promote(pipeline: Pipeline, meta: dict[str, Any], model_dir: str | Path) -> dict[str, Any]:
    """Write the candidate so that readers switch from the old model to the new one in one step.

    (The first promotion over a model written by plain ``train.py``, whose model.json names
    ``model.joblib``, replaces that file right after the switch: a reload racing it fails its sha256
    check and keeps serving the old model, so even then no mix is ever loaded.)

    The pipeline goes to a new file named by its checksum (``model-<sha>.joblib``); then
    ``model.json``, which names the model file and its sha256, is replaced atomically. That rename is
    the switch: a loader that read the old model.json loads the old, untouched model file; one that
    read the new model.json loads the new one. Afterwards ``model.joblib`` is pointed at the same
    bytes (for tools that open it by name, e.g. the Dask scorer), and model files older than the
    previous one are removed.
    """
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    try:
        previous = read_meta(model_dir)
        previous_file = previous.get("model_file", MODEL_FILE)
        previous_fast = (previous.get(FAST_META_KEY) or {}).get("file")
    except (ModelError, AttributeError):
        previous_file = previous_fast = None
    tmp, sha = dump_pipeline(pipeline, model_dir)
    try:
        name = f"model-{sha[:16]}.joblib"
        os.replace(tmp, model_dir / name)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    # The fast path's arrays under a name of their own too (model.fast.npz is what the previous
    # model.json may name), so a reader of either model.json finds the arrays it describes.
    fast_name = f"model-{sha[:16]}.fast.npz"
    fast = save_fast_arrays(pipeline, model_dir, sha, str(meta.get("model_version", "unknown")), file_name=fast_name)
    fsync_dir(model_dir)
    meta = {k: v for k, v in meta.items() if k != FAST_META_KEY}
    meta = {**meta, "model_file": name, "model_sha256": sha, **({FAST_META_KEY: fast} if fast else {})}
    write_json(model_dir / META_FILE, meta)  # the switch
    fsync_dir(model_dir)
    _alias_model_file(model_dir, name)
    keep = {name, fast_name, MODEL_FILE, FAST_FILE, previous_file, previous_fast}
    for path in model_dir.glob("model-*"):
        if VERSIONED_MODEL.match(path.name) and path.name not in keep:
            path.unlink(missing_ok=True)
    log.info("promoted %s (%s) in %s", meta["model_version"], name, model_dir)
    return meta


def _alias_model_file(model_dir: Path, name: str) -> None:
    """Make model.joblib the promoted file's bytes."""
    link_or_copy(model_dir / name, model_dir / MODEL_FILE)


__all__ = ["retrain_with_feedback", "merge_decisions", "promote", "text_key"]
