"""ServiceState: the classify interface and the model swap under concurrent requests."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest

from modclf.model import ModelError
from modclf.policy import DEFAULT_POLICY_PATH, PolicyError
from modclf.serving.metrics import ServiceMetrics
from modclf.serving.state import ServiceState

TEXTS = ["Buy followers now at www.cheap-fans.example.com", "Is there a source for this?", "Totally wrong.", "Thanks!"]


def copy_model(src: Path, dst: Path, version: str) -> Path:
    """A copy of a model directory announcing another version (same weights, valid sha256)."""
    shutil.copytree(src, dst)
    set_version(dst, version)
    return dst


def set_version(model_dir: Path, version: str) -> None:
    meta = json.loads((model_dir / "model.json").read_text())
    meta["model_version"] = version
    (model_dir / "model.json").write_text(json.dumps(meta))


@pytest.fixture()
def two_models(model_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    return copy_model(model_dir, tmp_path / "a", "model-a"), copy_model(model_dir, tmp_path / "b", "model-b")


def test_classify_matches_the_sklearn_pipeline(model_dir: Path, artifact) -> None:
    state = ServiceState(model_dir, DEFAULT_POLICY_PATH)
    results = state.classify(TEXTS)
    expected = artifact.predict_proba(TEXTS)
    for result, row in zip(results, expected):
        assert list(result["probabilities"].values()) == pytest.approx(list(row), abs=1e-9)
        assert result["model_version"] == artifact.version


def test_reload_swaps_under_concurrent_classification_without_errors(two_models: tuple[Path, Path]) -> None:
    """Readers classify non-stop while the model is swapped back and forth: none fails, and each
    answer comes entirely from one model (never a mix)."""
    a, b = two_models
    state = ServiceState(a, DEFAULT_POLICY_PATH, metrics=ServiceMetrics())
    stop = threading.Event()
    errors: list[BaseException] = []
    seen: set[str] = set()

    def reader() -> None:
        while not stop.is_set():
            try:
                out = state.classify(TEXTS)
                versions = {r["model_version"] for r in out}
                assert len(versions) == 1
                seen.update(versions)
            except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)
                return

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for i in range(2):
            assert state.reload(b if i % 2 == 0 else a) == ("model-b" if i % 2 == 0 else "model-a")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors
    assert seen == {"model-a", "model-b"}
    assert state.model_version == "model-a" and state.model_dir == a


def test_reload_defaults_to_the_current_directory(two_models: tuple[Path, Path]) -> None:
    a, _ = two_models
    state = ServiceState(a, DEFAULT_POLICY_PATH)
    set_version(a, "model-a2")
    assert state.reload() == "model-a2" == state.model_version


def test_failed_reload_keeps_the_working_model(two_models: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = two_models
    metrics = ServiceMetrics()
    state = ServiceState(a, DEFAULT_POLICY_PATH, metrics=metrics)
    (b / "model.joblib").write_bytes(b"corrupt")
    with pytest.raises(ModelError):
        state.reload(b)
    with pytest.raises(ModelError, match="not found"):
        state.reload(tmp_path / "missing")
    assert state.model_version == "model-a" and state.model_dir == a
    assert state.classify(["still works"])[0]["model_version"] == "model-a"
    assert metrics.registry.get_sample_value("modclf_model_reloads_total", {"result": "failed"}) == 2


def test_reload_all_swaps_nothing_when_the_policy_is_broken(two_models: tuple[Path, Path], tmp_path: Path) -> None:
    a, _ = two_models
    policy = tmp_path / "policy.yaml"
    shutil.copy(DEFAULT_POLICY_PATH, policy)
    state = ServiceState(a, policy)
    set_version(a, "model-a-new")
    policy.write_text("labels: nonsense\n")
    with pytest.raises(PolicyError):
        state.reload_all()
    assert state.model_version == "model-a"
    policy.write_text("labels: {}\ndefault: reject\n")
    version, new_policy = state.reload_all()
    assert version == "model-a-new" and new_policy.default == "reject" and state.policy is new_policy


def test_model_info_gauge_follows_the_swap(two_models: tuple[Path, Path]) -> None:
    a, b = two_models
    metrics = ServiceMetrics()
    state = ServiceState(a, DEFAULT_POLICY_PATH, metrics=metrics)
    state.reload(b)
    value = metrics.registry.get_sample_value
    assert value("modclf_model_info", {"version": "model-a"}) == 0
    assert value("modclf_model_info", {"version": "model-b"}) == 1
