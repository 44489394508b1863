"""The fast path's saved arrays (model.fast.npz): written with the model, verified like it, and
never required (older model directories load as before)."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modclf.errors import ModelError
from modclf.model import FAST_FILE, FAST_META_KEY, add_fast_arrays, load_fast_arrays, read_meta, save_fast_arrays, \
    sha256_file
from modclf.moderator import LoadedModel

from .conftest import ROOT

TEXTS = ["Thank you for the clear report", "Earn $500 a day at www.easy-cash.example !!!", "Is the road open?",
         "That is a lie and you know it", "ｗｗｗ.ｘ.ｃｏｍ", ""]


@pytest.fixture()
def copy(model_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(model_dir, target)
    return target


def _meta(path: Path) -> dict:
    return json.loads((path / "model.json").read_text())


def _write_meta(path: Path, meta: dict) -> None:
    (path / "model.json").write_text(json.dumps(meta))


def test_training_writes_the_arrays_with_their_sha256(model_dir: Path) -> None:
    entry = _meta(model_dir)[FAST_META_KEY]
    assert entry["file"] == FAST_FILE
    assert entry["sha256"] == sha256_file(model_dir / FAST_FILE)
    assert entry["model_sha256"] == _meta(model_dir)["model_sha256"]


def test_the_arrays_file_is_deterministic(model_dir: Path, artifact, tmp_path: Path) -> None:
    meta = read_meta(model_dir)
    again = save_fast_arrays(artifact.pipeline, tmp_path, meta["model_sha256"], artifact.version)
    assert again == meta[FAST_META_KEY]
    assert (tmp_path / FAST_FILE).read_bytes() == (model_dir / FAST_FILE).read_bytes()


def test_lazy_load_scores_without_the_pipeline(model_dir: Path, artifact) -> None:
    model = LoadedModel.load(model_dir, lazy=True)
    assert model._artifact is None  # nothing unpickled
    np.testing.assert_allclose(model.predict_proba(TEXTS), artifact.predict_proba(TEXTS), rtol=0, atol=1e-9)
    assert model.version == artifact.version and model.supported_languages
    assert model.artifact.pipeline is not None  # loaded on first use
    eager = LoadedModel.load(model_dir)
    assert eager._artifact is not None


def _modules_loaded_after(code: str, modules: tuple[str, ...]) -> list[str]:
    """Run ``code`` in a fresh interpreter; which of ``modules`` it imported."""
    code += f"\nimport sys\nprint(sorted(m for m in {modules!r} if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().replace("'", '"'))


def test_scoring_workers_never_import_scikit_learn_or_pandas(model_dir: Path, tmp_path: Path) -> None:
    pd.DataFrame({"text": TEXTS}).to_csv(tmp_path / "in.csv", index=False)
    # a worker's start-up and one task
    worker = (f"from modclf import scoring\nscoring._init_worker({str(model_dir)!r}, None, True, None)\n"
              f"assert len(scoring._score_task({TEXTS!r})['label']) == {len(TEXTS)}")
    assert _modules_loaded_after(worker, ("sklearn", "joblib", "scipy.sparse", "pandas")) == []
    # the main process of a run reads and writes; the model is loaded only in the workers
    main = (f"from modclf.scoring import score_file\n"
            f"score_file({str(tmp_path / 'in.csv')!r}, {str(tmp_path / 'out.csv')!r}, {str(model_dir)!r})")
    assert _modules_loaded_after(main, ("sklearn", "joblib", "scipy.sparse", "numba", "fasttext")) == []
    assert len(pd.read_csv(tmp_path / "out.csv")) == len(TEXTS)


def test_scoring_a_file_with_tampered_arrays_fails_with_the_loaders_error(copy: Path, tmp_path: Path) -> None:
    from modclf.scoring import score_file

    with open(copy / FAST_FILE, "r+b") as fh:
        fh.seek(-100, 2)
        fh.write(b"\x00" * 8)
    pd.DataFrame({"text": TEXTS}).to_csv(tmp_path / "in.csv", index=False)
    with pytest.raises(ModelError, match=f"{FAST_FILE}: sha256 .* does not match model.json"):
        score_file(tmp_path / "in.csv", tmp_path / "out.csv", copy, workers=2)
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "out.csv.parts").exists()


def test_tampered_arrays_are_refused_naming_the_file(copy: Path) -> None:
    with open(copy / FAST_FILE, "r+b") as fh:
        fh.seek(-100, 2)
        fh.write(b"\x00" * 8)
    with pytest.raises(ModelError, match=f"{FAST_FILE}: sha256 .* does not match model.json") as info:
        LoadedModel.load(copy, lazy=True)
    assert str(copy / FAST_FILE) in str(info.value) and "\n" not in str(info.value)


def test_missing_arrays_listed_in_model_json_are_refused(copy: Path) -> None:
    (copy / FAST_FILE).unlink()
    with pytest.raises(ModelError, match=f"{FAST_FILE}: fast-path arrays listed in model.json not found"):
        LoadedModel.load(copy)


def test_a_malformed_entry_is_refused(copy: Path) -> None:
    meta = _meta(copy)
    _write_meta(copy, {**meta, FAST_META_KEY: {"file": "../elsewhere.npz", "sha256": "0" * 64}})
    with pytest.raises(ModelError, match="malformed 'fast_arrays' entry"):
        LoadedModel.load(copy)


def test_old_model_directory_without_arrays_still_loads(copy: Path, artifact) -> None:
    meta = _meta(copy)
    del meta[FAST_META_KEY]
    _write_meta(copy, meta)
    (copy / FAST_FILE).unlink()
    model = LoadedModel.load(copy, lazy=True)  # falls back to the pipeline
    assert model._artifact is not None
    np.testing.assert_allclose(model.predict_proba(TEXTS), artifact.predict_proba(TEXTS), rtol=0, atol=1e-9)
    # and can be given its arrays afterwards
    assert FAST_META_KEY in add_fast_arrays(copy)
    assert LoadedModel.load(copy, lazy=True)._artifact is None


def test_arrays_built_for_another_model_file_are_ignored(copy: Path, caplog) -> None:
    meta = _meta(copy)
    meta[FAST_META_KEY]["model_sha256"] = "f" * 64  # e.g. a retrain replaced the model but not the arrays
    _write_meta(copy, meta)
    assert load_fast_arrays(copy, read_meta(copy)) is None
    assert LoadedModel.load(copy, lazy=True)._artifact is not None


def _rewrite_arrays(path: Path, change) -> None:  # type: ignore[no-untyped-def]
    import hashlib
    import io
    import zipfile

    with np.load(path / FAST_FILE) as npz:
        arrays = {k: npz[k] for k in npz.files}
    change(arrays)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, value in arrays.items():
            with zf.open(f"{name}.npy", "w") as fh:
                np.lib.format.write_array(fh, value, allow_pickle=False)
    (path / FAST_FILE).write_bytes(buf.getvalue())
    meta = _meta(path)
    meta[FAST_META_KEY]["sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
    _write_meta(path, meta)


def test_arrays_of_another_layout_fall_back_to_the_pipeline(copy: Path) -> None:
    _rewrite_arrays(copy, lambda a: a.update(format=np.asarray(999)))
    assert LoadedModel.load(copy, lazy=True)._artifact is not None


def test_arrays_that_disagree_with_scikit_learn_fall_back(copy: Path, artifact, caplog) -> None:
    def skew(arrays: dict) -> None:
        rec = arrays["char.rec"].copy()
        rec[:, 1:] *= 1.5  # the weights, not the idf (the l2 norm would cancel that)
        arrays["char.rec"] = rec

    _rewrite_arrays(copy, skew)
    with caplog.at_level(logging.WARNING, logger="modclf.moderator"):
        model = LoadedModel.load(copy, lazy=True)
    assert "disagree" in caplog.text
    np.testing.assert_allclose(model.predict_proba(TEXTS), artifact.predict_proba(TEXTS), rtol=0, atol=1e-9)


def test_lazy_pipeline_is_verified_against_the_loaded_model_json(copy: Path) -> None:
    model = LoadedModel.load(copy, lazy=True)
    with open(copy / "model.joblib", "ab") as fh:
        fh.write(b"x")
    with pytest.raises(ModelError, match="model.joblib: sha256 .* does not match model.json"):
        model.artifact  # noqa: B018


@pytest.mark.slow
def test_numba_kernels_load_from_the_cache(model_dir: Path) -> None:
    """The second process loading the model compiles nothing: every kernel comes from numba's cache."""
    code = ("import modclf._kernels as K\nfrom modclf.moderator import LoadedModel\n"
            f"m = LoadedModel.load({str(model_dir)!r}, lazy=True)\nm.predict_proba(['warm up ok?', 'ÉCOLE été'])\n"
            "from numba.core.registry import CPUDispatcher\n"
            "misses = {n: sum(f.stats.cache_misses.values()) for n, f in vars(K).items() if isinstance(f, CPUDispatcher)}\n"
            "hits = {n: sum(f.stats.cache_hits.values()) for n, f in vars(K).items() if isinstance(f, CPUDispatcher)}\n"
            "print(sum(misses.values()), sum(hits.values()), {n: v for n, v in misses.items() if v})")
    for _ in range(2):  # the first run may compile (a changed kernel source); the second must not
        proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr
    misses, hits, which = proc.stdout.split(" ", 2)
    assert int(misses) == 0, f"kernels compiled instead of loaded from the cache: {which}"
    assert int(hits) >= 3
