"""Metrics and reports shared by cross-validation and ``train.py --eval``: labels, the moderation
decisions the policy makes from the predictions, and calibration."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from .labels import LABELS
from .policy import Escalation, Policy


def compute_metrics(y_true: Sequence[str], y_pred: Sequence[str]) -> dict[str, Any]:
    """Per-class precision/recall/F1/support, macro-F1, accuracy and the confusion matrix."""
    p, r, f, s = precision_recall_fscore_support(
        y_true, y_pred, labels=list(LABELS), zero_division=0
    )
    cm = confusion_matrix(y_true, y_pred, labels=list(LABELS))
    # over the labels the file or the model uses: a label absent from both is not a class the model
    # failed on (scikit-learn's own default), while one it predicts but the file lacks still counts 0
    used = set(y_true) | set(y_pred)
    present = [i for i, label in enumerate(LABELS) if label in used] or list(range(len(LABELS)))
    return {
        "n": int(len(y_true)),
        "accuracy": round(float(np.mean(np.asarray(y_true) == np.asarray(y_pred))), 4),
        "macro_f1": round(float(np.mean(f[present])), 4),
        "per_class": {
            label: {
                "precision": round(float(p[i]), 4),
                "recall": round(float(r[i]), 4),
                "f1": round(float(f[i]), 4),
                "support": int(s[i]),
            }
            for i, label in enumerate(LABELS)
        },
        "confusion_matrix": {"labels": list(LABELS), "rows_true_cols_pred": cm.tolist()},
    }


def format_report(metrics: dict[str, Any], title: str) -> str:
    """A plain-text report: per-class table, macro-F1, accuracy, confusion matrix."""
    lines = [title, "", f"{'label':<10}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
    for label, m in metrics["per_class"].items():
        lines.append(
            f"{label:<10}{m['precision']:>10.3f}{m['recall']:>10.3f}{m['f1']:>10.3f}{m['support']:>10d}"
        )
    lines += ["", f"macro-F1  {metrics['macro_f1']:.3f}    accuracy  {metrics['accuracy']:.3f}    n={metrics['n']}"]
    cm = metrics["confusion_matrix"]
    lines += ["", "confusion matrix (rows = true, columns = predicted)"]
    lines.append(" " * 10 + "".join(f"{label[:8]:>9}" for label in cm["labels"]))
    for label, row in zip(cm["labels"], cm["rows_true_cols_pred"]):
        lines.append(f"{label:<10}" + "".join(f"{v:>9d}" for v in row))
    return "\n".join(lines)


def compare_line(name_a: str, a: dict[str, Any], name_b: str, b: dict[str, Any]) -> str:
    per = "  ".join(
        f"{label} {a['per_class'][label]['f1']:.3f}/{b['per_class'][label]['f1']:.3f}" for label in LABELS
    )
    return f"macro-F1 {name_a} {a['macro_f1']:.3f} vs {name_b} {b['macro_f1']:.3f}   per-class F1 ({name_a}/{name_b}): {per}"


def save_confusion_png(metrics: dict[str, Any], path: str | Path, title: str) -> Path:
    """Render the confusion matrix as a PNG (headless backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(metrics["confusion_matrix"]["rows_true_cols_pred"])
    labels = metrics["confusion_matrix"]["labels"]
    fig, ax = plt.subplots(figsize=(6, 5), dpi=100)
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels=labels)
    ax.set_yticks(range(len(labels)), labels=labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title}\nmacro-F1 {metrics['macro_f1']:.3f}")
    threshold = cm.max() / 2 if cm.size else 0
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", color="white" if cm[i, j] > threshold else "black")
    return _save(fig, path)


# -- decisions: what the moderation policy does with the predictions ------------------------------

#: Characters of a comment the evaluation classifies, as the service does by default
#: (``limits.max_text_chars``): a longer comment is classified on its bounded window
#: (:func:`modclf.window.bounded_window`) and flagged ``truncated`` for the policy.
WINDOW_CHARS = 10_000

#: Number of equal-width confidence bins of the calibration measures.
CALIBRATION_BINS = 10

_ACTIONS: tuple[str, ...] = ("approve", "review", "reject")


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def _share(count: int, total: int) -> float | None:
    """``count / total`` rounded, or None when there is nothing to divide by."""
    return _round(count / total) if total else None


def _check_proba(proba: Any, n: int | None = None) -> np.ndarray:
    proba = np.asarray(proba, dtype=float)
    if proba.ndim != 2 or proba.shape[1] != len(LABELS):
        raise ValueError(f"probabilities must be an (n, {len(LABELS)}) array in LABELS order, got shape {proba.shape}")
    if n is not None and proba.shape[0] != n:
        raise ValueError(f"{proba.shape[0]} probability rows for {n} labels")
    return proba


def proba_in_label_order(proba: Any, classes: Sequence[str]) -> np.ndarray:
    """Reorder the columns of a classifier's ``predict_proba`` (in ``classes`` order) to LABELS order.

    A label the classifier never saw gets a column of zeros.
    """
    proba = np.asarray(proba, dtype=float)
    classes = list(classes)
    out = np.zeros((proba.shape[0], len(LABELS)))
    for j, label in enumerate(LABELS):
        if label in classes:
            out[:, j] = proba[:, classes.index(label)]
    return out


def policy_actions(proba: Any, policy: Policy, truncated: Sequence[bool] | None = None,
                   conditions: Sequence[Sequence[str]] | None = None) -> list[str]:
    """The policy's action for every row of ``proba`` ((n, 5), LABELS order), as the service decides it.

    The top label is the most probable one (ties go to the first in LABELS order, like ``argmax``);
    each row is decided under its ``conditions`` (:meth:`modclf.moderator.Moderator.conditions`),
    or, without them, under ``truncated`` for the rows flagged in ``truncated``.
    """
    proba = _check_proba(proba)
    if truncated is not None and len(truncated) != len(proba):
        raise ValueError(f"{len(truncated)} truncated flags for {len(proba)} rows")
    if conditions is None:
        conditions = [("truncated",) if truncated is not None and truncated[i] else () for i in range(len(proba))]
    elif len(conditions) != len(proba):
        raise ValueError(f"{len(conditions)} condition sets for {len(proba)} rows")
    actions = []
    for i, row in enumerate(proba.tolist()):
        best = int(np.argmax(row))
        actions.append(policy.action_for(LABELS[best], row[best], dict(zip(LABELS, row)), tuple(conditions[i])))
    return actions


def true_action(label: str, policy: Policy) -> str:
    """What the policy does with a perfectly confident prediction of ``label``: the action the
    comment deserves under the policy, against which the model's actions are judged."""
    probabilities = {name: (1.0 if name == label else 0.0) for name in LABELS}
    return policy.action_for(label, 1.0, probabilities)


def _decision_counts(y_true: np.ndarray, actions: np.ndarray, expected: np.ndarray) -> dict[str, Any]:
    """Shares of actions and the costly mistakes, for one set of rows."""
    n = int(len(y_true))
    spam, dispute = y_true == "spam", y_true == "dispute"
    non_spam = ~spam
    differ = int(np.sum(actions != expected))
    published_spam = int(np.sum(spam & (actions == "approve")))
    rejected_non_spam = int(np.sum(non_spam & (actions == "reject")))
    approved_disputes = int(np.sum(dispute & (actions == "approve")))
    return {
        "n": n,
        "actions": {a: {"count": int(np.sum(actions == a)), "share": _share(int(np.sum(actions == a)), n)} for a in _ACTIONS},
        "action_differs": {"count": differ, "share": _share(differ, n)},
        "spam_published": {"count": published_spam, "of": int(spam.sum()), "share": _share(published_spam, int(spam.sum()))},
        "non_spam_rejected": {"count": rejected_non_spam, "of": int(non_spam.sum()),
                              "share": _share(rejected_non_spam, int(non_spam.sum()))},
        "disputes_approved": {"count": approved_disputes, "of": int(dispute.sum()),
                              "share": _share(approved_disputes, int(dispute.sum()))},
    }


def decision_metrics(
    y_true: Sequence[str],
    proba: Any,
    policy: Policy,
    truncated: Sequence[bool] | None = None,
    sources: Sequence[str] | None = None,
    conditions: Sequence[Sequence[str]] | None = None,
    actions: Sequence[str] | None = None,
) -> dict[str, Any]:
    """What the moderation policy does with the predictions, judged against the true labels.

    ``actions``: the actions actually taken, when the caller decided them
    (:meth:`modclf.moderator.Moderator.decide`: with the readings of cue sentences, spam segments and
    foreign parts that the policy alone does not see); otherwise computed from ``proba`` as below.

    ``proba`` is an (n, 5) array in :data:`modclf.labels.LABELS` order. Each row's action is
    ``policy.action_for(top label, its probability, all probabilities)`` (under the ``truncated``
    condition for rows flagged in ``truncated``); its *true action* is :func:`true_action` of its
    true label. Returned (shares are fractions in [0, 1], None when the denominator is 0):

    - ``actions``: count and share of rows approved / held for review / rejected;
    - ``action_differs``: rows whose action is not their true action;
    - ``action_confusion``: true action (rows) x action (columns), counts;
    - ``spam_published``: spam rows approved (published without a moderator), ``of`` = spam rows;
    - ``non_spam_rejected``: non-spam rows rejected, ``of`` = non-spam rows;
    - ``disputes_approved``: dispute rows approved, ``of`` = dispute rows;
    - ``truncated``: rows decided under the truncated condition;
    - ``by_source`` (when ``sources`` is given): per source, ``n``, ``accuracy``, ``macro_f1`` (over
      the labels that occur in that source), ``labels``, ``actions`` shares and ``spam_published``.
    """
    y = np.asarray(list(y_true), dtype=object)
    proba = _check_proba(proba, len(y))
    unknown = sorted({str(v) for v in y} - set(LABELS))
    if unknown:
        raise ValueError(f"unknown label(s) {', '.join(unknown)}")
    if sources is not None and len(sources) != len(y):
        raise ValueError(f"{len(sources)} sources for {len(y)} rows")
    pred = np.asarray(LABELS, dtype=object)[proba.argmax(axis=1)] if len(y) else np.asarray([], dtype=object)
    if actions is None:
        actions = policy_actions(proba, policy, truncated, conditions)
    elif len(actions) != len(y):
        raise ValueError(f"{len(actions)} actions for {len(y)} rows")
    actions = np.asarray(list(actions), dtype=object)
    truths = {label: true_action(label, policy) for label in LABELS}
    expected = np.asarray([truths[label] for label in y], dtype=object)

    out = _decision_counts(y, actions, expected)
    out["true_actions"] = truths
    out["action_confusion"] = {
        "actions": list(_ACTIONS),
        "rows_true_cols_action": [[int(np.sum((expected == t) & (actions == a))) for a in _ACTIONS] for t in _ACTIONS],
    }
    out["truncated"] = int(sum(bool(t) for t in truncated)) if truncated is not None else 0
    if sources is not None:
        src = np.asarray([str(s) if str(s).strip() else "(none)" for s in sources], dtype=object)
        by_source: dict[str, Any] = {}
        for name in sorted(set(src.tolist())):
            mask = src == name
            ys, ps = y[mask], pred[mask]
            present = [label for label in LABELS if label in set(ys.tolist())]
            _, _, f, _ = precision_recall_fscore_support(ys, ps, labels=present, zero_division=0)
            counts = _decision_counts(ys, actions[mask], expected[mask])
            by_source[name] = {
                "n": counts["n"],
                "accuracy": _round(np.mean(ys == ps)),
                "macro_f1": _round(np.mean(f)),
                "labels": present,
                "actions": {a: counts["actions"][a]["share"] for a in _ACTIONS},
                "spam_published": counts["spam_published"],
                "disputes_approved": counts["disputes_approved"],
            }
        out["by_source"] = by_source
    return out


#: Thresholds ``modclf eval --sweep LABEL`` tries, beside the policy's own value for that label.
SWEEP_THRESHOLDS: tuple[float, ...] = (0.50, 0.45, 0.40, 0.35, 0.30, 0.25, 0.20, 0.15, 0.10)


def escalation_sweep(
    y_true: Sequence[str],
    proba: Any,
    policy: Policy,
    label: str,
    thresholds: Sequence[float] = SWEEP_THRESHOLDS,
    truncated: Sequence[bool] | None = None,
    conditions: Sequence[Sequence[str]] | None = None,
) -> list[dict[str, Any]]:
    """The policy's decisions with the escalation on p(``label``) moved to each threshold.

    The rest of the policy stays as it is. The escalation's action is the policy's own for
    ``label`` (``review`` when it has none), and the thresholds tried are ``thresholds`` plus the
    policy's current one, so a site can see what holding more or fewer comments buys: per threshold,
    the shares approved / held / rejected, the rows of ``label`` approved, spam published and the
    share of actions that differ from the true label's.
    """
    if label not in LABELS:
        raise ValueError(f"unknown label {label!r} (labels: {', '.join(LABELS)})")
    current = [e for e in policy.escalations if e.label == label]
    action = current[0].action if current else "review"
    others = tuple(e for e in policy.escalations if e.label != label)
    tried = sorted({round(float(t), 4) for t in thresholds} | {e.at_least for e in current}, reverse=True)
    y = np.asarray(list(y_true), dtype=object)
    of = int(np.sum(y == label))
    rows = []
    for threshold in tried:
        swept = dataclasses.replace(policy, escalations=others + (Escalation(label, threshold, action),))
        actions = np.asarray(policy_actions(proba, swept, truncated, conditions), dtype=object)
        truths = {name: true_action(name, swept) for name in LABELS}
        expected = np.asarray([truths[t] for t in y], dtype=object)
        counts = _decision_counts(y, actions, expected)
        approved = int(np.sum((y == label) & (actions == "approve")))
        rows.append({
            "threshold": threshold,
            "current": any(e.at_least == threshold for e in current),
            "actions": {a: counts["actions"][a]["share"] for a in _ACTIONS},
            "label_approved": {"count": approved, "of": of, "share": _share(approved, of)},
            "spam_published": counts["spam_published"],
            "action_differs": counts["action_differs"]["share"],
        })
    return rows


def format_sweep(rows: Sequence[dict[str, Any]], label: str, title: str) -> str:
    """The sweep as a table, one threshold per line (``*`` marks the policy's current value)."""
    pct = _percent
    lines = [title, "", f"{'p(' + label + ') >=':<14}{'approve':>9}{'review':>9}{'reject':>9}"
             f"{label + ' approved':>22}{'spam published':>20}{'action differs':>16}"]
    for r in rows:
        part, spam = r["label_approved"], r["spam_published"]
        approved = f"{part['count']}/{part['of']} ({pct(part['share'])})"
        published = f"{spam['count']}/{spam['of']}"
        shares = "".join(f"{pct(r['actions'][a]):>9}" for a in _ACTIONS)
        lines.append(f"{'*' if r['current'] else ' '}{r['threshold']:<13.2f}{shares}{approved:>22}{published:>20}"
                     f"{pct(r['action_differs']):>16}")
    lines.append("* = the policy's current threshold; the rest of the policy unchanged")
    return "\n".join(lines)


# -- calibration -----------------------------------------------------------------------------------

def calibration_metrics(y_true: Sequence[str], proba: Any, bins: int = CALIBRATION_BINS) -> dict[str, Any]:
    """Top-label calibration: expected calibration error and the reliability diagram's data.

    Each row's confidence is its highest probability and it is *correct* when that label is the true
    one. Rows fall into ``bins`` equal-width bins ``(lo, hi]`` of confidence (the first also takes
    0). ``ece`` = sum over bins of (rows in bin / n) * |accuracy in bin - mean confidence in bin|;
    ``mce`` is the largest such gap over non-empty bins. ``bins`` lists, for every bin, ``lo``,
    ``hi``, ``n``, ``confidence`` (mean) and ``accuracy`` (None for an empty bin).
    """
    y = np.asarray(list(y_true), dtype=object)
    proba = _check_proba(proba, len(y))
    n = len(y)
    confidence = proba.max(axis=1) if n else np.zeros(0)
    correct = (np.asarray(LABELS, dtype=object)[proba.argmax(axis=1)] == y) if n else np.zeros(0, dtype=bool)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.searchsorted(edges[1:-1], confidence, side="left")  # (lo, hi], first bin [0, hi]
    table: list[dict[str, Any]] = []
    ece, mce = 0.0, 0.0
    for b in range(bins):
        mask = index == b
        k = int(mask.sum())
        conf = float(confidence[mask].mean()) if k else None
        acc = float(correct[mask].mean()) if k else None
        if k:
            gap = abs(acc - conf)  # type: ignore[operator]
            ece += k / n * gap
            mce = max(mce, gap)
        table.append({"lo": _round(edges[b]), "hi": _round(edges[b + 1]), "n": k,
                      "confidence": _round(conf), "accuracy": _round(acc)})
    return {
        "n": n,
        "ece": _round(ece) if n else None,
        "mce": _round(mce) if n else None,
        "mean_confidence": _round(confidence.mean()) if n else None,
        "accuracy": _round(correct.mean()) if n else None,
        "bins": table,
    }


def save_reliability_png(
    calibration: dict[str, Any],
    path: str | Path,
    title: str,
    baseline: dict[str, Any] | None = None,
) -> Path:
    """Render the reliability diagram (accuracy against mean confidence per bin, the diagonal being
    perfect calibration) with the number of rows per bin below it, as a PNG (headless backend).
    ``baseline``, when given, is drawn beside the model as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, hist) = plt.subplots(2, 1, figsize=(6, 6.5), dpi=100, sharex=True,
                                   gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
    curves = [("model", calibration, "-", "tab:blue")]
    if baseline is not None:
        curves.append(("baseline", baseline, "--", "tab:orange"))
    for name, cal, style, color in curves:
        points = [(b["confidence"], b["accuracy"]) for b in cal["bins"] if b["n"]]
        if points:
            xs, ys = zip(*points)
            ece = cal["ece"]
            ax.plot(xs, ys, style, marker="o", color=color,
                    label=f"{name} (ECE {ece:.3f})" if ece is not None else name)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.legend(loc="upper left")
    lo = [b["lo"] for b in calibration["bins"]]
    width = [b["hi"] - b["lo"] for b in calibration["bins"]]
    hist.bar(lo, [b["n"] for b in calibration["bins"]], width=width, align="edge", color="tab:blue",
             alpha=0.6, edgecolor="white")
    hist.set_xlabel("confidence (top label's probability)")
    hist.set_ylabel("rows (model)")
    return _save(fig, path)


# -- text reports ----------------------------------------------------------------------------------

def _percent(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.1f}%"


def _pct(part: dict[str, Any]) -> str:
    share = part["share"]
    return f"{part['count']} of {part['of']} ({share * 100:.1f}%)" if share is not None else f"{part['count']} of 0"


def format_decisions(decisions: dict[str, Any], title: str, calibration: dict[str, Any] | None = None) -> str:
    """A plain-text report of :func:`decision_metrics` (and :func:`calibration_metrics` when given)."""
    n = decisions["n"]
    acts = decisions["actions"]
    lines = [title, ""]
    lines.append("actions   " + "    ".join(
        f"{a} {acts[a]['count']} ({(acts[a]['share'] or 0) * 100:.1f}%)" for a in _ACTIONS) + f"    n={n}")
    differ = decisions["action_differs"]
    lines.append(f"action differs from the true label's action: {differ['count']} of {n} "
                 f"({(differ['share'] or 0) * 100:.1f}%)")
    lines.append(f"spam published without review:  {_pct(decisions['spam_published'])}")
    lines.append(f"non-spam rejected:               {_pct(decisions['non_spam_rejected'])}")
    lines.append(f"disputes auto-approved:          {_pct(decisions['disputes_approved'])}")
    if decisions.get("truncated"):
        lines.append(f"truncated (classified on a {WINDOW_CHARS}-character window, never approved): {decisions['truncated']}")
    conf = decisions["action_confusion"]
    lines += ["", "actions (rows = true label's action, columns = action taken)"]
    lines.append(" " * 10 + "".join(f"{a:>9}" for a in conf["actions"]))
    for a, row in zip(conf["actions"], conf["rows_true_cols_action"]):
        lines.append(f"{a:<10}" + "".join(f"{v:>9d}" for v in row))
    if decisions.get("by_source"):
        width = max(10, *(len(s) + 2 for s in decisions["by_source"]))
        def ratio(part: dict[str, Any]) -> str:
            return f"{part['count']}/{part['of']} ({part['share'] * 100:.1f}%)" if part["of"] else "-"

        lines += ["", f"{'source':<{width}}{'n':>6}{'accuracy':>10}{'macro-F1':>10}{'approve':>9}"
                      f"{'spam published':>18}{'disputes approved':>20}"]
        for name, s in decisions["by_source"].items():
            lines.append(f"{name:<{width}}{s['n']:>6d}{s['accuracy']:>10.3f}{s['macro_f1']:>10.3f}"
                         f"{(s['actions']['approve'] or 0) * 100:>8.1f}%{ratio(s['spam_published']):>18}"
                         f"{ratio(s['disputes_approved']):>20}")
    if calibration is not None and calibration["n"]:
        lines += ["", f"calibration (top label, {len(calibration['bins'])} bins): ECE {calibration['ece']:.3f}    "
                  f"MCE {calibration['mce']:.3f}    mean confidence {calibration['mean_confidence']:.3f}    "
                  f"accuracy {calibration['accuracy']:.3f}"]
        lines.append(f"{'confidence':<12}{'n':>6}{'mean conf':>11}{'accuracy':>10}")
        for b in calibration["bins"]:
            if b["n"]:
                lines.append(f"{b['lo']:.1f}-{b['hi']:.1f}{'':<5}{b['n']:>6d}{b['confidence']:>11.3f}{b['accuracy']:>10.3f}")
    return "\n".join(lines)


def compare_decisions_line(name_a: str, a: dict[str, Any], name_b: str, b: dict[str, Any],
                           cal_a: dict[str, Any] | None = None, cal_b: dict[str, Any] | None = None) -> str:
    """One line setting two :func:`decision_metrics` results (and calibrations) side by side."""
    def pct(d: dict[str, Any], key: str) -> str:
        return _percent(d[key]["share"])

    parts = [f"{label} {pct(a, key)}/{pct(b, key)}" for label, key in (
        ("action differs", "action_differs"), ("spam published", "spam_published"),
        ("non-spam rejected", "non_spam_rejected"), ("disputes approved", "disputes_approved"))]
    if cal_a is not None and cal_b is not None and cal_a["n"] and cal_b["n"]:
        parts.append(f"ECE {cal_a['ece']:.3f}/{cal_b['ece']:.3f}")
    return f"decisions ({name_a}/{name_b}): " + "   ".join(parts)


def _save(fig: Any, path: str | Path) -> Path:
    """Write a figure as PNG (no software stamp, so the bytes depend on the data only) and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
    return path
