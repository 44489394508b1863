"""Shared fixtures. The model used by tests is trained once per session from data/ (no CV)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data" / "comments.csv"
SHARED_EVAL = ROOT.parent / "shared" / "eval"


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained on the shipped corpus, exactly as train.py builds it (minus cross-validation)."""
    from modclf.training import train

    out = tmp_path_factory.mktemp("model")
    train([DATA], out, seed=0, folds=0, progress=False, report=logging.getLogger("test").info)
    return out


@pytest.fixture(scope="session")
def artifact(model_dir: Path):
    from modclf.model import load_artifact

    return load_artifact(model_dir)


@pytest.fixture(scope="session")
def real_dev() -> Path:
    """The labeled real comments, read at run time from ../shared/eval; skipped where absent."""
    path = SHARED_EVAL / "real_dev_labeled.csv"
    if not path.is_file():
        pytest.skip("../shared/eval/real_dev_labeled.csv not present (evaluation data is not shipped)")
    return path
