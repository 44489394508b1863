"""modclf: a comment-section moderation classifier (TF-IDF + LogisticRegression).

Five labels (spam, dispute, question, support, other; see :data:`modclf.labels.LABELS`), and a
moderation policy that turns them into approve / review / reject.

>>> import modclf
>>> moderator = modclf.load("model/")                                  # doctest: +SKIP
>>> [v.action for v in moderator.classify(["Thank you Iran", "Buy followers at www.x.example"])]  # doctest: +SKIP
['approve', 'reject']

Public API: :func:`load`, :class:`Moderator`, :class:`Verdict`, :class:`Settings` /
:func:`load_settings`, and the error family :class:`ModclfError` (``modclf.errors``). Heavy
libraries are imported on first use, so ``import modclf`` is cheap.
"""

from __future__ import annotations

from typing import Any

from .errors import ConfigError, DataError, FeedbackError, ModclfError, ModelError, PolicyError, ScoringError
from .labels import LABELS

__version__ = "1.1.0"

__all__ = ["load", "Moderator", "Verdict", "Settings", "load_settings", "LABELS", "ModclfError", "DataError",
           "ModelError", "PolicyError", "ConfigError", "ScoringError", "FeedbackError", "__version__"]

_LAZY = {"load": "moderator", "Moderator": "moderator", "Verdict": "moderator", "Settings": "settings",
         "load_settings": "settings"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'modclf' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
