"""train.py: validation of training data, determinism, the artifact, --eval."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import train as train_cli
from modclf.data import DataError, read_labeled, read_many, row_weights
from modclf.labels import LABELS
from modclf.model import ModelError, fit_model, load_artifact, sha256_file
from modclf.training import cross_validate, train

from .conftest import DATA


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 rows per label from the corpus: enough to train and cross-validate in a second."""
    df = pd.read_csv(DATA, dtype=str, keep_default_na=False)
    small = df.groupby("label").head(60)
    path = tmp_path_factory.mktemp("data") / "small.csv"
    small.to_csv(path, index=False)
    return path


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


@pytest.mark.parametrize(
    "content, expected",
    [
        ("id,text\n1,hello\n", "missing column(s) 'label'"),
        ("text,label\nhello,spma\n", "row 1: field 'label': unknown label 'spma'"),
        ("id,text,label\na1,ok,other\na2,  ,spam\n", "row 2 (id=a2): field 'text': empty text"),
        (b"text,label\nfine,other\ncaf\xe9,other\n", "line 3: not valid UTF-8"),
        ("", "not a readable CSV file"),
        ("text,label,weight\nok,other,2\nhello,other,0\n", "row 2: field 'weight': '0' is not a whole number from 1 to 10"),
        ("text,label,weight\nhello,other,2.5\n", "row 1: field 'weight': '2.5' is not a whole number"),
        ("text,label,weight\nhello,other,11\n", "row 1: field 'weight': '11' is not a whole number"),
        ("text,label,weight\nhello,other,-1\n", "row 1: field 'weight': '-1' is not a whole number"),
        ("text,label,weight\nhello,other,\u0663\n", "row 1: field 'weight': '\u0663' is not a whole number"),
        ("id,text,label,label\n1,hello,other,spam\n", "line 1: column 'label' appears more than once"),
        ("id,text,text,label\n1,hello,buy now,other\n", "line 1: column 'text' appears more than once"),
    ],
)
def test_bad_training_data_names_file_row_and_field(tmp_path: Path, content: str | bytes, expected: str) -> None:
    path = write(tmp_path, "bad.csv", content)
    with pytest.raises(DataError) as info:
        read_labeled(path)
    assert str(path) in str(info.value)
    assert expected in str(info.value)


def test_every_problem_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.csv", "text,label\n,other\nfine,nope\nok,spam\n")
    with pytest.raises(DataError) as info:
        read_labeled(path)
    assert "row 1: field 'text'" in str(info.value) and "row 2: field 'label'" in str(info.value)


def test_too_few_rows_per_label_is_refused(tmp_path: Path, small_csv: Path) -> None:
    df = pd.read_csv(small_csv, dtype=str, keep_default_na=False)
    df = df[(df.label != "question") | (df.index.isin(df[df.label == "question"].index[:3]))]
    path = tmp_path / "few.csv"
    df.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"too few rows per label \('question' has 3; at least 5 needed\)"):
        train([path], tmp_path / "m", folds=5, progress=False, report=lambda s: None)
    assert not (tmp_path / "m" / "model.joblib").exists()


def test_cli_reports_bad_data_on_stderr_with_exit_status_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = write(tmp_path, "bad.csv", "text,label\nhello,spma\n")
    assert train_cli.main(["--data", str(path), "--model-dir", str(tmp_path / "m"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "bad.csv: row 1: field 'label'" in err and "Traceback" not in err


def test_same_data_and_seed_give_the_same_model_and_numbers(tmp_path: Path, small_csv: Path) -> None:
    quiet = lambda s: None  # noqa: E731
    a = train([small_csv], tmp_path / "a", seed=3, folds=2, progress=False, report=quiet)
    b = train([small_csv], tmp_path / "b", seed=3, folds=2, progress=False, report=quiet)
    assert a["model_sha256"] == b["model_sha256"]
    assert sha256_file(tmp_path / "a" / "model.joblib") == sha256_file(tmp_path / "b" / "model.joblib")
    assert a["metrics"] == b["metrics"]
    assert a["model_version"] == b["model_version"]


def test_artifact_metadata(tmp_path: Path, small_csv: Path) -> None:
    meta = train([small_csv], tmp_path, seed=0, folds=2, progress=False, report=lambda s: None)
    on_disk = json.loads((tmp_path / "model.json").read_text())
    assert on_disk == meta
    assert meta["labels"] == list(LABELS)
    assert meta["training_data"]["files"] == {str(small_csv): sha256_file(small_csv)}
    assert meta["model_sha256"] == sha256_file(tmp_path / "model.joblib")
    assert {"scikit-learn", "numpy", "pandas", "joblib", "python"} <= set(meta["libraries"])
    cv = meta["metrics"]["cross_validation"]
    assert set(cv) == {"folds", "model", "baseline"}
    assert set(cv["model"]["per_class"]) == set(LABELS)
    assert sum(map(sum, cv["model"]["confusion_matrix"]["rows_true_cols_pred"])) == 300
    assert (tmp_path / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert meta["trained_at"]


def test_tampered_model_is_refused(tmp_path: Path, small_csv: Path) -> None:
    train([small_csv], tmp_path, folds=0, progress=False, report=lambda s: None)
    with open(tmp_path / "model.joblib", "ab") as fh:
        fh.write(b"x")
    with pytest.raises(ModelError, match="does not match model.json"):
        load_artifact(tmp_path)


def test_missing_model_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="model metadata not found"):
        load_artifact(tmp_path)


def test_eval_reports_and_records_without_touching_the_model(
    tmp_path: Path, small_csv: Path, capsys: pytest.CaptureFixture
) -> None:
    train([small_csv], tmp_path, folds=0, progress=False, report=lambda s: None)
    digest = sha256_file(tmp_path / "model.joblib")
    labeled = pd.read_csv(DATA, dtype=str, keep_default_na=False).iloc[-200:][["text", "label"]]
    eval_csv = tmp_path / "held_out.csv"
    labeled.to_csv(eval_csv, index=False)
    png = tmp_path / "cm.png"
    code = train_cli.main(["--eval", str(eval_csv), "--model-dir", str(tmp_path), "--data", str(small_csv),
                           "--png", str(png)])
    assert code == 0
    out = capsys.readouterr().out
    assert "macro-F1" in out and "baseline" in out and "confusion matrix" in out
    meta = json.loads((tmp_path / "model.json").read_text())
    recorded = meta["evaluations"]["held_out.csv"]
    assert recorded["model"]["n"] == 200 and "baseline" in recorded
    assert sha256_file(tmp_path / "model.joblib") == digest
    load_artifact(tmp_path)  # still verifies
    assert png.is_file()


def test_shipped_model_predicts_every_label(artifact) -> None:
    texts = [
        "FREE iPhone giveaway!!! click www.prizes-now.xyz before it ends",
        "Pure invention, the author should be ashamed of this piece",
        "Does anyone know if the border crossing is open today?",
        "Thank you for the great coverage, keep it up!",
        "The offensive will probably stall once the rains start.",
    ]
    proba = artifact.predict_proba(texts)
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert [LABELS[i] for i in proba.argmax(axis=1)] == list(LABELS)


def test_two_training_processes_write_byte_identical_models(tmp_path: Path, small_csv: Path) -> None:
    """Across processes too: a fitted TfidfVectorizer remembers a memory address (id of its
    stop_words) that differs from one interpreter to the next; the saved model must not."""
    import subprocess
    import sys

    digests = []
    for name in ("a", "b"):
        subprocess.run([sys.executable, "train.py", "--data", str(small_csv), "--folds", "0", "--no-progress",
                        "--model-dir", str(tmp_path / name)], cwd=DATA.parent.parent, check=True, capture_output=True)
        digests.append(sha256_file(tmp_path / name / "model.joblib"))
    assert digests[0] == digests[1]


# -- row weights --------------------------------------------------------------------------------------

def test_weight_column_is_optional_and_empty_means_one(tmp_path: Path) -> None:
    assert row_weights(read_labeled(write(tmp_path, "a.csv", "text,label\nhi,other\n"))) == [1]
    path = write(tmp_path, "b.csv", "text,label,weight\nhi,other,\nyo,support,3\n")
    assert row_weights(read_labeled(path)) == [1, 3]
    both = read_many([write(tmp_path, "c.csv", "text,label\nhey,other\n"), path])
    assert row_weights(both) == [1, 1, 3]


def test_a_weighted_row_trains_exactly_as_that_many_copies(small_csv: Path) -> None:
    df = pd.read_csv(small_csv, dtype=str, keep_default_na=False)
    texts, labels = df["text"].tolist(), df["label"].tolist()
    weights = [1 + (i % 3 == 0) * 2 for i in range(len(texts))]  # every third row counts three times
    weighted = fit_model(texts, labels, 0, weights)
    copies = fit_model([t for t, k in zip(texts, weights) for _ in range(k)],
                       [y for y, k in zip(labels, weights) for _ in range(k)], 0)
    plain = fit_model(texts, labels, 0)
    assert np.array_equal(weighted[-1].coef_, copies[-1].coef_)
    # the weights did change the fit: a term of a weighted row counts in min_df once per copy
    assert weighted[-1].coef_.shape != plain[-1].coef_.shape or not np.allclose(weighted[-1].coef_, plain[-1].coef_)


def test_cross_validation_holds_out_rows_and_trains_on_their_weights() -> None:
    texts = [f"comment {i}" for i in range(20)]
    labels = ["spam", "other"] * 10
    weights = list(range(1, 21))
    seen: list[tuple[list[str], list[int]]] = []

    class Echo:
        def predict(self, X):  # noqa: ANN001, ANN202
            return np.asarray(["other"] * len(X), dtype=object)

    def fit(tx, ty, tw=None):  # noqa: ANN001, ANN202
        seen.append((list(tx), list(tw)))
        return Echo()

    pred = cross_validate(fit, texts, labels, 4, 0, "cv", progress=False, weights=weights)
    assert len(pred) == 20 and len(seen) == 4
    for tx, tw in seen:
        assert len(tx) == 15 and tw == [int(t.split()[1]) + 1 for t in tx]  # each row's own weight
    assert sorted(t for tx, _ in seen for t in tx) == sorted(texts * 3)  # every row held out exactly once


def test_train_records_weighted_rows(tmp_path: Path, small_csv: Path) -> None:
    df = pd.read_csv(small_csv, dtype=str, keep_default_na=False)
    df["weight"] = ["2" if i % 2 else "" for i in range(len(df))]
    path = tmp_path / "weighted.csv"
    df.to_csv(path, index=False)
    lines: list[str] = []
    meta = train([path], tmp_path / "m", folds=0, progress=False, report=lines.append)
    assert meta["training_data"]["rows"] == len(df)
    assert meta["training_data"]["weighted_rows"] == len(df) + len(df) // 2
    assert any("rows count more than once" in line for line in lines)


@pytest.mark.parametrize("dies_at", [1, 2, 3])
def test_training_into_a_served_directory_can_die_at_any_step(tmp_path: Path, small_csv: Path, monkeypatch,
                                                               dies_at: int) -> None:
    """Killed while writing, the directory still loads: the old model before the switch to the new
    model.json, the new one after it (the old way replaced model.joblib first: a kill before
    model.json was written left a sha256 mismatch that no service could load)."""
    import modclf.model as M

    live = tmp_path / "model"
    old = train([small_csv], live, folds=0, progress=False, report=lambda _: None)
    df = pd.read_csv(small_csv, dtype=str, keep_default_na=False)
    other = tmp_path / "other.csv"
    df.iloc[::-1].iloc[5:].to_csv(other, index=False)  # different data: a different model
    calls = {"write_json": 0, "link_or_copy": 0}
    real_write, real_link = M.write_json, M.link_or_copy

    def write_json(path, obj):
        calls["write_json"] += 1
        if dies_at == 1 and calls["write_json"] == 1:
            raise KeyboardInterrupt("killed before the switch")
        if dies_at == 3 and calls["write_json"] == 2:
            raise KeyboardInterrupt("killed before model.json names model.joblib again")
        return real_write(path, obj)

    def link_or_copy(src, dst):
        if dies_at == 2:
            raise KeyboardInterrupt("killed while model.joblib is replaced")
        return real_link(src, dst)

    monkeypatch.setattr(M, "write_json", write_json)
    monkeypatch.setattr(M, "link_or_copy", link_or_copy)
    with pytest.raises(KeyboardInterrupt):
        train([other], live, folds=0, progress=False, report=lambda _: None)
    monkeypatch.undo()
    loaded = load_artifact(live)
    expected = old["model_version"] if dies_at == 1 else json.loads((live / "model.json").read_text())["model_version"]
    assert loaded.version == expected
    if dies_at > 1:
        assert loaded.version != old["model_version"]
    import modclf

    assert modclf.load(live).classify(["Thanks for the report"])[0].label in LABELS  # the fast arrays agree too
    # a later run cleans up after the killed one (its staged files, whatever model they were)
    (live / "model-0123456789abcdef.joblib").write_bytes(b"left by a killed run")
    new = train([other], live, folds=0, progress=False, report=lambda _: None)
    assert json.loads((live / "model.json").read_text())["model_file"] == "model.joblib"
    assert not list(live.glob("model-*")) and load_artifact(live).version == new["model_version"]


def test_a_text_with_two_labels_is_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    a = write(tmp_path, "a.csv", "text,label\nThanks for the report,support\nIs it confirmed?,question\n")
    b = write(tmp_path, "b.csv", "text,label\n  thanks for the REPORT ,other\nIs it confirmed?,question\n")
    with caplog.at_level("WARNING", logger="modclf.data"):
        read_many([a, b])
    assert "1 text(s) appear with different labels" in caplog.text and "thanks for the report" in caplog.text
