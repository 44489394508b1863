"""Metrics and reports shared by cross-validation and ``train.py --eval``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from .labels import LABELS


def compute_metrics(y_true: Sequence[str], y_pred: Sequence[str]) -> dict[str, Any]:
    """Per-class precision/recall/F1/support, macro-F1, accuracy and the confusion matrix."""
    p, r, f, s = precision_recall_fscore_support(
        y_true, y_pred, labels=list(LABELS), zero_division=0
    )
    cm = confusion_matrix(y_true, y_pred, labels=list(LABELS))
    return {
        "n": int(len(y_true)),
        "accuracy": round(float(np.mean(np.asarray(y_true) == np.asarray(y_pred))), 4),
        "macro_f1": round(float(np.mean(f)), 4),
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
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
    return path
