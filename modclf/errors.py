"""The error family: every error modclf raises for bad input, configuration or state.

Catch :class:`ModclfError` to handle them all. Each message is one line that names the problem
(the file, row and field; the setting; the model file), so a command-line entry point prints it as
``error: <message>`` and exits with :data:`EXIT_USAGE`, and the service logs it as it is.
Programming errors (``TypeError`` from a wrong call, bugs) are deliberately not in the family.

======================  ==============================================================
class                   raised when
======================  ==============================================================
``DataError``           a labeled or unlabeled comment file is unreadable or invalid
``ModelError``          a model directory is missing, corrupt or fails its checks
``PolicyError``         a moderation policy file is missing or breaks a rule
``ConfigError``         a setting (flag, ``MODCLF_*`` variable, settings file) is invalid
``ScoringError``        batch scoring cannot run (formats, columns, output location)
``FeedbackError``       the feedback store cannot be reached or written
======================  ==============================================================
"""

from __future__ import annotations

#: Exit status of every command for a ModclfError (argparse uses 2 for usage errors as well).
EXIT_USAGE = 2


class ModclfError(Exception):
    """Base class of every error modclf raises on purpose; the message is one line."""


class DataError(ModclfError, ValueError):
    """A comment file is unreadable or invalid; the message names the file, row and field."""


class ModelError(ModclfError, RuntimeError):
    """The model directory is missing, unreadable or inconsistent with its metadata."""


class PolicyError(ModclfError, ValueError):
    """The policy file is missing, unreadable or breaks a rule."""


class ConfigError(ModclfError, ValueError):
    """A configuration value is invalid; the message names the setting."""


class ScoringError(ModclfError, ValueError):
    """Batch scoring cannot run on these inputs or outputs."""


class FeedbackError(ModclfError, RuntimeError):
    """The feedback store is unavailable or refused a write; nothing was stored."""


__all__ = ["ModclfError", "DataError", "ModelError", "PolicyError", "ConfigError", "ScoringError",
           "FeedbackError", "EXIT_USAGE"]
