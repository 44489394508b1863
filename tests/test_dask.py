"""Distributed scoring on a real dask.distributed LocalCluster (loopback only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import score as score_cli
from modclf.scoring import score_file

from .conftest import DATA

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as c:
        yield c


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    df = pd.read_csv(DATA, dtype=str, keep_default_na=False).iloc[:3000][["id", "text"]].copy()
    df.loc[5, "text"] = ""
    return df


@pytest.fixture(scope="module")
def comments(tmp_path_factory, frame: pd.DataFrame) -> Path:
    """JSON Lines: newlines inside comments are escaped, so Dask may split the file by bytes."""
    path = tmp_path_factory.mktemp("dask") / "in.jsonl"
    frame.to_json(path, orient="records", lines=True, force_ascii=False)
    return path


@pytest.fixture(scope="module")
def csv_dir(tmp_path_factory, frame: pd.DataFrame) -> Path:
    """A directory of CSV files, one partition each."""
    folder = tmp_path_factory.mktemp("csvparts")
    for i in range(3):
        frame.iloc[i * 1000:(i + 1) * 1000].to_csv(folder / f"part-{i}.csv", index=False)
    return folder


def test_dask_output_matches_local_scoring(tmp_path: Path, model_dir: Path, cluster, comments: Path, capsys) -> None:
    out = tmp_path / "scored.parquet"
    code = score_cli.main([str(comments), "-o", str(out), "--engine", "dask", "--scheduler", cluster.scheduler_address,
                           "--partition-size", "100KB", "--model-dir", str(model_dir)])
    assert code == 0
    parts = sorted(out.glob("*.parquet"))
    assert len(parts) > 1, "input should have been split into several partitions"
    distributed = pd.read_parquet(out)
    score_file(comments, tmp_path / "local.parquet", model_dir)
    local = pd.read_parquet(tmp_path / "local.parquet")
    assert distributed["id"].tolist() == local["id"].tolist()
    assert distributed["label"].tolist() == local["label"].tolist()
    assert np.allclose(distributed["p_spam"].fillna(-1), local["p_spam"].fillna(-1))
    assert distributed.loc[5, "error"] == "empty text"
    assert "scored 2999 of 3000 rows" in capsys.readouterr().err


def test_dask_csv_output_and_missing_column(tmp_path: Path, model_dir: Path, cluster, comments: Path, csv_dir: Path,
                                            frame: pd.DataFrame, capsys) -> None:
    out = tmp_path / "scored.csv"
    assert score_cli.main([str(csv_dir), "-o", str(out), "--engine", "dask", "--scheduler",
                           cluster.scheduler_address, "--model-dir", str(model_dir)]) == 0
    rows = pd.concat(pd.read_csv(p, dtype=str, keep_default_na=False) for p in sorted(out.glob("part-*.csv")))
    assert len(list(out.glob("part-*.csv"))) == 3
    assert rows["id"].tolist() == frame["id"].tolist()
    code = score_cli.main([str(comments), "-o", str(tmp_path / "x.parquet"), "--engine", "dask", "--scheduler",
                           cluster.scheduler_address, "--model-dir", str(model_dir), "--text-column", "body"])
    assert code == 2 and "no column 'body'" in capsys.readouterr().err
    assert not (tmp_path / "x.parquet").exists()


def test_an_unreachable_scheduler_is_a_one_line_error(tmp_path: Path, model_dir: Path, comments: Path, capsys) -> None:
    import dask
    import distributed  # noqa: F401 - its config defaults first: leaving the block below restores the config

    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):  # nothing listens on 8119
        code = score_cli.main([str(comments), "-o", str(tmp_path / "out"), "--engine", "dask", "--scheduler",
                               "tcp://127.0.0.1:8119", "--model-dir", str(model_dir)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: cannot reach the Dask scheduler at tcp://127.0.0.1:8119: ")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_dask_keeps_a_stored_parquet_index_and_csv_blank_lines(tmp_path: Path, model_dir: Path, cluster) -> None:
    pd.DataFrame({"text": ["hi", "thanks", "ok"]}, index=pd.Index(["a", "b", "c"], name="cid")).to_parquet(
        tmp_path / "named.parquet")
    pd.DataFrame({"text": ["hi", "thanks"]}, index=["x", "y"]).to_parquet(tmp_path / "unnamed.parquet")
    (tmp_path / "blank.csv").write_text("text\nhello\n\nthanks\n")
    args = ["--engine", "dask", "--scheduler", cluster.scheduler_address, "--model-dir", str(model_dir)]
    for name in ("named.parquet", "unnamed.parquet", "blank.csv"):
        assert score_cli.main([str(tmp_path / name), "-o", str(tmp_path / f"{name}.out"), *args]) == 0
    assert pd.read_parquet(tmp_path / "named.parquet.out")["cid"].tolist() == ["a", "b", "c"]
    assert pd.read_parquet(tmp_path / "unnamed.parquet.out")["__index_level_0__"].tolist() == ["x", "y"]
    blank = pd.read_parquet(tmp_path / "blank.csv.out")
    assert blank["text"].tolist() == ["hello", "", "thanks"] and blank["error"].tolist() == ["", "empty text", ""]


def test_dask_csv_output_quotes_a_bare_carriage_return(tmp_path: Path, model_dir: Path, cluster) -> None:
    """pandas' minimal quoting left "a\\r=cmd" unquoted: readers split the row at the CR and the next
    cell started a line as a live formula."""
    import csv

    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "r1", "text": "nice\\r=cmd|\' /C calc\'!A0"}\n{"id": "r2", "text": "ok then"}\n',
                   encoding="utf-8")
    out = tmp_path / "scored.csv"
    assert score_cli.main([str(src), "-o", str(out), "--engine", "dask", "--scheduler", cluster.scheduler_address,
                           "--model-dir", str(model_dir)]) == 0
    rows = []
    for part in sorted(out.glob("part-*.csv")):
        with part.open(newline="", encoding="utf-8") as fh:
            rows += list(csv.DictReader(fh))
    assert [r["id"] for r in rows] == ["r1", "r2"]
    assert rows[0]["text"] == "nice\r=cmd|' /C calc'!A0"  # inside its quoted cell, not at the start of a row
