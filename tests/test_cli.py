"""The modclf command line itself: argument checks and how it ends (tests of each command's work are
with the module it runs: test_scoring, test_evaluation, test_feedback, ...)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from modclf.cli import build_parser

from .conftest import ROOT


@pytest.mark.parametrize("port, message", [
    ("99999", "must be a port number from 0 to 65535, got 99999"),
    ("-1", "must be a port number from 0 to 65535, got -1"),
    ("http", "not a port number: 'http'"),
])
def test_serve_refuses_an_impossible_port(port: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["serve", f"--port={port}"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"modclf serve: error: argument --port: {message}"
    assert build_parser().parse_args(["serve", "--port", "65535"]).port == 65535
    assert build_parser().parse_args(["serve", "--port", "0"]).port == 0  # any free port


def test_a_closed_stdout_ends_the_command_quietly(tmp_path: Path) -> None:
    """`modclf ... | head -1`: the reader closes the pipe; no BrokenPipeError traceback, status 1."""
    from modclf.feedback import FeedbackStore

    store = FeedbackStore(f"sqlite:///{tmp_path / 'fb.db'}", durable=False)
    store.record("c1", "a comment", "support", "test")
    store.close()
    proc = subprocess.Popen([sys.executable, "-m", "modclf", "feedback", "export", "--feedback-db",
                             f"sqlite:///{tmp_path / 'fb.db'}"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # before the command writes: its first write meets a pipe without a reader
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 1
    assert err == ""


def test_a_scheduler_without_the_dask_engine_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--scheduler asks for a cluster: scoring locally instead, silently, is not what was asked."""
    from modclf.cli import main

    src = tmp_path / "in.csv"
    src.write_text("text\nhello\n", encoding="utf-8")
    assert main(["score", str(src), "-o", str(tmp_path / "out.csv"), "--scheduler", "tcp://127.0.0.1:8786"]) == 2
    assert "--scheduler is for --engine dask" in capsys.readouterr().err
    assert not (tmp_path / "out.csv").exists()


def test_eval_names_a_labeled_file_that_is_not_csv(tmp_path: Path) -> None:
    from modclf.data import read_labeled
    from modclf.errors import DataError

    path = tmp_path / "labeled.jsonl"
    path.write_text('{"text": "hi", "label": "other"}\n', encoding="utf-8")
    with pytest.raises(DataError, match="labeled files are CSV"):
        read_labeled(path)


def test_unusable_output_places_are_refused_before_any_work(tmp_path: Path, model_dir: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    import os
    import shutil

    from modclf.cli import main

    labeled = tmp_path / "l.csv"
    labeled.write_text("text,label\nThanks!,support\nBuy now www.x.com,spam\n", encoding="utf-8")
    a_file = tmp_path / "afile"
    a_file.write_text("x")
    assert main(["train", "--data", str(labeled), "--model-dir", str(a_file), "--folds", "0"]) == 2
    assert "--model-dir is a file, not a directory" in capsys.readouterr().err
    assert main(["eval", str(labeled), "--model-dir", str(model_dir), "--no-record", "--png", str(tmp_path / "x.txt")]) == 2
    assert "--png must name a .png file" in capsys.readouterr().err
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        shutil.copytree(model_dir, ro)
        ro.chmod(0o555)
        try:
            assert main(["eval", str(labeled), "--model-dir", str(ro)]) == 2
            assert "use --no-record" in capsys.readouterr().err
        finally:
            ro.chmod(0o755)


def test_parquet_with_a_column_twice_or_text_that_is_not_utf8_is_an_error(tmp_path: Path, model_dir: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from modclf.cli import main

    twice = tmp_path / "twice.parquet"
    pq.write_table(pa.Table.from_arrays([pa.array(["a"]), pa.array(["b"])], names=["text", "text"]), twice)
    assert main(["score", str(twice), "-o", str(tmp_path / "o1.csv"), "--model-dir", str(model_dir)]) == 2
    assert "column 'text' appears more than once" in capsys.readouterr().err
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"text": pa.array([b"ok", b"\xff\xfe ab"], pa.binary()).view(pa.string())}), bad)
    assert main(["score", str(bad), "-o", str(tmp_path / "o2.csv"), "--model-dir", str(model_dir)]) == 2
    err = capsys.readouterr().err
    assert "bad.parquet: rows from 1: cannot be read" in err and "UTF-8" in err
    assert not list(tmp_path.glob("o1.csv*")) and not list(tmp_path.glob("o2.csv*"))
