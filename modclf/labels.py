"""The label set: the one place the five labels and their order are defined."""

from __future__ import annotations

#: Labels in order of precedence (see data/LABELING.md). The order is also the column order of
#: probability outputs (``p_spam`` ... ``p_other``) everywhere in the project.
LABELS: tuple[str, ...] = ("spam", "dispute", "question", "support", "other")

PROBA_COLUMNS: tuple[str, ...] = tuple(f"p_{label}" for label in LABELS)


def is_label(value: object) -> bool:
    return isinstance(value, str) and value in LABELS
