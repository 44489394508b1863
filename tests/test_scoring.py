"""score.py / modclf.scoring: formats, no lost rows, clear errors, atomic output, resume, workers."""

from __future__ import annotations

import json
import os
import signal
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import score as score_cli
from modclf import scoring
from modclf.labels import LABELS, PROBA_COLUMNS
from modclf.scoring import ScoringError, score_file

from .conftest import DATA, ROOT

TEXTS = [
    "Download every new movie free at www.flixzone-hd.net !!!",
    "This is propaganda, nothing in this report is true",
    "Does anyone know which units took the hill?",
    "Thank you for the honest reporting",
    "The front will probably freeze for the winter.",
]


def frame(n: int = 50) -> pd.DataFrame:
    texts = [TEXTS[i % len(TEXTS)] + f" #{i}" for i in range(n)]
    df = pd.DataFrame({"id": [f"r{i}" for i in range(n)], "text": texts, "extra": range(n)})
    df.loc[7, "text"] = ""
    df.loc[11, "text"] = "   "
    return df


def test_csv_keeps_every_row_column_and_order(tmp_path: Path, model_dir: Path, capsys) -> None:
    src = tmp_path / "in.csv"
    frame().to_csv(src, index=False)
    code = score_cli.main([str(src), "-o", str(tmp_path / "out.csv"), "--model-dir", str(model_dir), "--chunk-size", "16"])
    assert code == 0
    out = pd.read_csv(tmp_path / "out.csv", dtype={"id": str}, keep_default_na=False)
    assert list(out.columns) == ["id", "text", "extra", "label", "confidence", *PROBA_COLUMNS, "action", "truncated", "language",
                                 "policy_version", "error"]
    assert set(out["action"]) <= {"approve", "review", "reject"}
    assert out.loc[7, "action"] == "review"  # a row nobody could read is not published unseen
    assert out["policy_version"].nunique() == 1
    assert out["id"].tolist() == [f"r{i}" for i in range(50)]
    assert out.loc[7, "error"] == "empty text" and out.loc[7, "label"] == ""
    assert out.loc[11, "error"] == "empty text"
    scored = out[out["error"] == ""]
    assert len(scored) == 48 and set(scored["label"]) <= set(LABELS)
    probs = scored[list(PROBA_COLUMNS)].astype(float).to_numpy()
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert np.allclose(scored["confidence"].astype(float), probs.max(axis=1))
    assert (np.asarray(LABELS)[probs.argmax(axis=1)] == scored["label"]).all()
    err = capsys.readouterr().err
    assert "scored 48 of 50 rows" in err and "empty text 2" in err


def test_jsonl_missing_and_non_string_text_are_kept_with_a_reason(tmp_path: Path, model_dir: Path) -> None:
    src = tmp_path / "in.jsonl"
    rows = [{"id": 1, "text": "Thank you so much!"}, {"id": 2}, {"id": 3, "text": None}, {"id": 4, "text": 42},
            {"id": 5, "text": "Is the road open?", "lang": "en"}]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = score_file(src, tmp_path / "out.jsonl", model_dir, chunk_size=2)
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["id"] for r in out] == [1, 2, 3, 4, 5]
    assert [r["error"] for r in out] == ["", "missing text", "missing text", "text is not a string (int)", ""]
    assert out[0]["label"] == "support" and out[4]["lang"] == "en"
    assert summary.rows == 5 and summary.scored == 2 and sum(summary.errors.values()) == 3


def test_jsonl_to_csv_keeps_numbers_flags_and_nested_values(tmp_path: Path, model_dir: Path) -> None:
    # the first chunk has only flat values (Arrow's CSV writer), the second a nested one (pandas fallback)
    rows = [{"id": 1, "text": "Thank you so much!", "n": 3, "ok": True, "note": "a, \"b\"\nc"},
            {"id": 2, "text": "Is the road open?", "n": None, "ok": False, "note": ""},
            {"id": 3, "text": "This is a lie", "n": 5, "ok": True, "note": {"k": [1, 2]}}]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    score_file(src, tmp_path / "out.csv", model_dir, chunk_size=2)
    out = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False)
    assert out["id"].tolist() == ["1", "2", "3"] and out["n"].tolist()[:2] == ["3", ""]
    assert out["note"].tolist()[:2] == ['a, "b"\nc', ""] and "1, 2" in out.loc[2, "note"]
    assert out["ok"].str.lower().tolist() == ["true", "false", "true"]
    assert (out["label"] != "").all() and out["p_spam"].astype(float).between(0, 1).all()


def test_parquet_round_trip_and_custom_text_column(tmp_path: Path, model_dir: Path) -> None:
    df = frame(30).rename(columns={"text": "body"})
    df.to_parquet(tmp_path / "in.parquet")
    score_file(tmp_path / "in.parquet", tmp_path / "out.parquet", model_dir, text_column="body", chunk_size=7)
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert len(out) == 30 and out["extra"].tolist() == list(range(30))
    assert out["body"].tolist() == df["body"].tolist()
    assert (out["label"] != "").sum() == 28


def test_fast_and_plain_paths_write_the_same_rows(tmp_path: Path, model_dir: Path) -> None:
    frame().to_csv(tmp_path / "in.csv", index=False)
    score_file(tmp_path / "in.csv", tmp_path / "fast.csv", model_dir, fast=True)
    score_file(tmp_path / "in.csv", tmp_path / "slow.csv", model_dir, fast=False)
    a, b = pd.read_csv(tmp_path / "fast.csv"), pd.read_csv(tmp_path / "slow.csv")
    assert (a["label"].fillna("") == b["label"].fillna("")).all()
    assert np.allclose(a[list(PROBA_COLUMNS)].fillna(-1), b[list(PROBA_COLUMNS)].fillna(-1), atol=1e-9)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_workers_give_the_same_output_as_one_process(tmp_path: Path, model_dir: Path, fmt: str) -> None:
    frame(200).to_csv(tmp_path / "in.csv", index=False)
    one = score_file(tmp_path / "in.csv", tmp_path / f"one.{fmt}", model_dir, chunk_size=30, workers=1)
    two = score_file(tmp_path / "in.csv", tmp_path / f"two.{fmt}", model_dir, chunk_size=30, workers=2)
    assert (one.workers, two.workers) == (1, 2)
    if fmt == "parquet":
        assert pd.read_parquet(tmp_path / "one.parquet").equals(pd.read_parquet(tmp_path / "two.parquet"))
    else:
        assert (tmp_path / f"one.{fmt}").read_bytes() == (tmp_path / f"two.{fmt}").read_bytes()
    assert not (tmp_path / f"two.{fmt}.parts").exists()


def test_the_command_uses_every_core_by_default(tmp_path: Path, model_dir: Path, capsys) -> None:
    frame(200).to_csv(tmp_path / "in.csv", index=False)
    score_file(tmp_path / "in.csv", tmp_path / "one.csv", model_dir, chunk_size=30, workers=1)
    assert score_cli.main([str(tmp_path / "in.csv"), "-o", str(tmp_path / "auto.csv"), "--model-dir", str(model_dir),
                           "--chunk-size", "30"]) == 0
    auto = scoring.resolve_workers("auto", (tmp_path / "in.csv").stat().st_size)
    assert f"rows/s, {auto} worker" in capsys.readouterr().err.splitlines()[0]
    assert (tmp_path / "one.csv").read_bytes() == (tmp_path / "auto.csv").read_bytes()
    from modclf.cli import build_parser

    help_text = build_parser()._subparsers._group_actions[0].choices["score"].format_help()  # type: ignore[union-attr]
    assert "auto" in help_text and "(default: auto)" in " ".join(help_text.split())


def test_auto_starts_one_worker_per_core_but_fewer_for_a_small_input(tmp_path: Path, model_dir: Path) -> None:
    frame(50).to_csv(tmp_path / "in.csv", index=False)
    summary = score_file(tmp_path / "in.csv", tmp_path / "out.csv", model_dir, workers="auto")
    assert summary.workers == 1 and summary.rows == 50
    cores = scoring.available_cores()
    assert scoring.resolve_workers("auto") == cores
    assert scoring.resolve_workers("auto", 100 * scoring.AUTO_BYTES_PER_WORKER) == cores
    assert scoring.resolve_workers("auto", scoring.AUTO_BYTES_PER_WORKER - 1) == 1
    assert scoring.resolve_workers(3, 10) == 3  # a number is taken as given


def test_a_single_chunk_shared_with_workers_gives_the_same_output(tmp_path: Path, model_dir: Path) -> None:
    n = scoring.SHARE_MIN_ROWS + 7
    frame(n).to_csv(tmp_path / "in.csv", index=False)
    one = score_file(tmp_path / "in.csv", tmp_path / "one.csv", model_dir, workers=1)
    shared = score_file(tmp_path / "in.csv", tmp_path / "shared.csv", model_dir, workers=3)
    assert (one.workers, shared.workers) == (1, 3)
    assert (one.rows, one.labels, one.errors) == (shared.rows, shared.labels, shared.errors)
    assert (tmp_path / "one.csv").read_bytes() == (tmp_path / "shared.csv").read_bytes()


@pytest.mark.parametrize(
    "name, content, expected",
    [
        ("in.csv", "id,body\n1,hello\n", "no column 'text' (columns: id, body); choose the text column with --text-column"),
        ("in.csv", "", "the file is empty"),
        ("in.jsonl", '{"text": "ok"}\n{"text": oops}\n', "line 2: invalid JSON"),
        ("in.jsonl", '{"text": "ok"}\n[1, 2]\n', "line 2: expected a JSON object, got list"),
        ("in.jsonl", b'{"text": "ok"}\n{"text": "caf\xe9"}\n', "line 2: not valid UTF-8"),
        ("in.csv", b"id,text\n1,caf\xe9\n", "not valid UTF-8"),
        ("in.csv", b'id,text\n1,ok\n2,"two\nlines caf\xe9"\n', "line 4: not valid UTF-8 (invalid continuation byte"),
        ("in.csv", "id,text\n1,a,b,c\n2,ok\n", "malformed CSV: line 2: expected 2 fields (the header's), saw 4"),
        ("in.csv", "id,text\n1,a\n2,ok,x\n", "line 3: expected 2 fields (the header's), saw 3"),
        ("in.csv", "id,text,id\n1,a,2\n", "line 1: column 'id' appears more than once in the header"),
        ("in.csv", 'id,text\n1,"multi\nline\nfield"\n2,ok\n3,bad,extra\n', "line 6: expected 2 fields (the header's), saw 3"),
        ("in.jsonl", '{"text": "ok"}\n{"text": "caf\\ud800"}\n', "line 2: a string holds an unpaired surrogate"),
        ("in.parquet", "not parquet", "not a readable Parquet file"),
        ("in.txt", "x", "cannot tell the format from the extension"),
        ("in.csv", "text,label\nhi,spam\n", "already has column(s) label"),
    ],
)
def test_bad_input_is_named_and_nothing_is_written(
    tmp_path: Path, model_dir: Path, capsys, name: str, content: str | bytes, expected: str
) -> None:
    src = tmp_path / name
    src.write_bytes(content if isinstance(content, bytes) else content.encode())
    out = tmp_path / "out.csv"
    code = score_cli.main([str(src), "-o", str(out), "--model-dir", str(model_dir)])
    err = capsys.readouterr().err
    assert code == 2
    assert expected in err and str(src) in err
    assert "Traceback" not in err
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_jsonl_output_keeps_values_exactly_and_a_missing_key_is_null(tmp_path: Path, model_dir: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": 1, "text": "hi there", "x": 3.141592653589793, "url": "a/b"}\n'
                   '{"id": 2, "x": 0.1}\n{"id": 3, "text": "=1+1", "x": [1, {"k": null}]}\n')
    score_file(src, tmp_path / "out.jsonl", model_dir)
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["x"] for r in rows] == [3.141592653589793, 0.1, [1, {"k": None}]]
    assert rows[0]["url"] == "a/b" and "\\/" not in (tmp_path / "out.jsonl").read_text()
    assert rows[1]["text"] is None and rows[1]["error"] == "missing text" and rows[1]["p_spam"] is None
    assert rows[0]["p_spam"] == pytest.approx(1 - sum(rows[0][c] for c in PROBA_COLUMNS if c != "p_spam"), abs=1e-12)
    score_file(src, tmp_path / "out.csv", model_dir)
    out = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False)
    assert out["text"].tolist() == ["hi there", "", "'=1+1"]  # null, not the text "NaN"


def test_formula_cells_of_every_text_dtype_are_escaped(tmp_path: Path, model_dir: Path) -> None:
    import pyarrow as pa

    df = pd.DataFrame({"text": pd.Categorical(["=cmd|' /C calc'!A0", "fine comment", "=cmd|' /C calc'!A0"]),
                       "note": pd.Categorical(["@SUM(1)", "+1", "ok"]),
                       "arrow": pd.array(["-2", "x", None], dtype=pd.ArrowDtype(pa.string())),
                       "n": [1, 2, 3]})
    df.to_parquet(tmp_path / "in.parquet")
    score_file(tmp_path / "in.parquet", tmp_path / "out.csv", model_dir)
    out = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False)
    assert out["text"].tolist() == ["'=cmd|' /C calc'!A0", "fine comment", "'=cmd|' /C calc'!A0"]
    assert out["note"].tolist() == ["'@SUM(1)", "'+1", "ok"] and out["arrow"].tolist() == ["'-2", "x", ""]
    assert out["n"].tolist() == ["1", "2", "3"]


def test_unwritable_outputs_are_named_before_anything_is_scored(tmp_path: Path, model_dir: Path, capsys) -> None:
    frame(20).to_csv(tmp_path / "in.csv", index=False)
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir.csv").mkdir()
    for output, expected in ((tmp_path / "afile" / "out.csv", "afile is a file, not a directory"),
                             (tmp_path / "adir.csv", "is a directory; give the output file's name")):
        assert score_cli.main([str(tmp_path / "in.csv"), "-o", str(output), "--model-dir", str(model_dir)]) == 2
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err
    assert not list(tmp_path.glob("*.parts")) and not list((tmp_path / "adir.csv").iterdir())


def test_one_run_per_output_and_a_killed_runs_leftovers_are_removed(tmp_path: Path, model_dir: Path) -> None:
    frame(20).to_csv(tmp_path / "in.csv", index=False)
    out = tmp_path / "out.csv"
    stale = tmp_path / ".out.csv.abcd1234.tmp"  # what a kill -9 during the final join leaves
    stale.write_text("half an output")
    other = tmp_path / ".out.csv.x.abcd1234.tmp"  # another output's temporary file: not ours
    other.write_text("keep")
    holder = subprocess.Popen(  # another run holds the output (record locks belong to a process)
        [sys.executable, "-c", "import fcntl, sys, time\nf = open(sys.argv[1], 'a+b')\n"
         "fcntl.lockf(f.fileno(), fcntl.LOCK_EX)\nprint('locked', flush=True)\ntime.sleep(120)",
         str(tmp_path / ".out.csv.lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ScoringError, match="another scoring run is writing this output"):
            score_file(tmp_path / "in.csv", out, model_dir)
        assert stale.exists() and not out.exists()
    finally:
        holder.kill()
        holder.wait()
    score_file(tmp_path / "in.csv", out, model_dir)
    assert not stale.exists() and other.exists() and not (tmp_path / ".out.csv.lock").exists()
    assert out.stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_resume_with_the_other_engine_starts_over(tmp_path: Path, model_dir: Path, monkeypatch) -> None:
    frame(40).to_csv(tmp_path / "in.csv", index=False)
    score_file(tmp_path / "in.csv", tmp_path / "slow.csv", model_dir, chunk_size=10, fast=False)
    real, calls = scoring._write_scored_chunk, {"n": 0}

    def crash_after_two(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(scoring, "_write_scored_chunk", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        score_file(tmp_path / "in.csv", tmp_path / "out.csv", model_dir, chunk_size=10)  # the fast path
    monkeypatch.undo()
    assert len(list((tmp_path / "out.csv.parts").glob("part-*.csv"))) == 2
    # --slow --resume: same labels, but not the same last digits, so nothing is reused
    summary = score_file(tmp_path / "in.csv", tmp_path / "out.csv", model_dir, chunk_size=10, fast=False, resume=True)
    assert summary.chunks_resumed == 0
    assert (tmp_path / "out.csv").read_bytes() == (tmp_path / "slow.csv").read_bytes()


def test_values_of_every_parquet_type_are_written_exactly(tmp_path: Path, model_dir: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    big = 2**62 + 1
    table = pa.table({"id": pa.array([big, None, 3], pa.int64()),
                      "text": ["first comment here", "second one", "=third"],
                      "tags": pa.array([list(range(2000)), [], None], pa.list_(pa.int64())),
                      "raw": pa.array([b"\x00\xff", None, b"ok"], pa.binary()),
                      "when": pa.array([0, None, 86_400_000_000], pa.timestamp("us"))})
    pq.write_table(table, tmp_path / "in.parquet")
    score_file(tmp_path / "in.parquet", tmp_path / "out.csv", model_dir)
    out = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False)
    assert out["id"].tolist() == [str(big), "", "3"]  # not 4.611686018427388e+18
    assert json.loads(out["tags"][0]) == list(range(2000))  # every element, no "..."
    assert out["raw"].tolist() == ["AP8=", "", "b2s="]  # base64
    assert out["text"].tolist() == ["first comment here", "second one", "'=third"]
    score_file(tmp_path / "in.parquet", tmp_path / "out.jsonl", model_dir)
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [big, None, 3]
    assert [r["when"] for r in rows] == ["1970-01-01T00:00:00", None, "1970-01-02T00:00:00"]


def test_a_huge_json_integer_is_written_as_text_not_a_crash(tmp_path: Path, model_dir: Path) -> None:
    (tmp_path / "in.jsonl").write_text('{"text": "hi there friends", "d": 100000000000000000000000001}\n')
    for fmt in ("csv", "parquet"):
        score_file(tmp_path / "in.jsonl", tmp_path / f"out.{fmt}", model_dir)
    assert pd.read_csv(tmp_path / "out.csv", dtype=str)["d"][0] == "100000000000000000000000001"
    assert pd.read_parquet(tmp_path / "out.parquet")["d"][0] == "100000000000000000000000001"


def test_bad_rows_found_midway_leave_no_parts_behind(tmp_path: Path, model_dir: Path, capsys) -> None:
    src = tmp_path / "in.csv"
    src.write_text("id,text\n" + "".join(f"{i},comment number {i}\n" for i in range(60)) + "60,bad,extra\n")
    code = score_cli.main([str(src), "-o", str(tmp_path / "out.csv"), "--model-dir", str(model_dir),
                           "--chunk-size", "10"])
    assert code == 2 and "line 62: expected 2 fields" in capsys.readouterr().err
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "out.csv.parts").exists()


def test_header_is_kept_as_written_and_a_symlinked_output_is_written_at_its_target(tmp_path: Path,
                                                                                   model_dir: Path) -> None:
    (tmp_path / "in.csv").write_text(",text\n0,hello there everyone\n")  # pandas' to_csv index column
    (tmp_path / "d").mkdir()
    (tmp_path / "link.csv").symlink_to(tmp_path / "d" / "out.csv")
    score_file(tmp_path / "in.csv", tmp_path / "link.csv", model_dir)
    assert (tmp_path / "link.csv").is_symlink()
    assert (tmp_path / "d" / "out.csv").read_text().startswith(",text,label,")


def test_too_many_workers_are_refused(tmp_path: Path, model_dir: Path) -> None:
    frame(20).to_csv(tmp_path / "in.csv", index=False)
    too_many = scoring.MAX_WORKERS_PER_CORE * scoring.available_cores() + 1
    with pytest.raises(ScoringError, match=f"--workers {too_many}: at most"):
        score_file(tmp_path / "in.csv", tmp_path / "out.csv", model_dir, workers=too_many)


def test_header_only_csv_gives_a_header_only_output(tmp_path: Path, model_dir: Path) -> None:
    (tmp_path / "in.csv").write_text("id,text\n")
    summary = score_file(tmp_path / "in.csv", tmp_path / "out.csv", model_dir)
    assert summary.rows == 0
    assert (tmp_path / "out.csv").read_text() == ("id,text,label,confidence," + ",".join(PROBA_COLUMNS)
                                                   + ",action,truncated,language,policy_version,error\n")


def test_failure_midway_leaves_an_existing_output_untouched(tmp_path: Path, model_dir: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS * 10) + "{broken\n")
    out = tmp_path / "out.jsonl"
    out.write_text("previous result\n")
    with pytest.raises(ScoringError, match="line 51: invalid JSON"):
        score_file(src, out, model_dir, chunk_size=10)
    assert out.read_text() == "previous result\n"


def test_resume_after_a_crash_gives_exactly_the_uninterrupted_rows(tmp_path: Path, model_dir: Path, monkeypatch) -> None:
    frame(120).to_csv(tmp_path / "in.csv", index=False)
    score_file(tmp_path / "in.csv", tmp_path / "full.csv", model_dir, chunk_size=10)

    real = scoring._write_scored_chunk
    calls = {"n": 0}

    def crash_after_five(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt  # what a Ctrl-C or a kill looks like to the loop
        return real(*args, **kwargs)

    monkeypatch.setattr(scoring, "_write_scored_chunk", crash_after_five)
    with pytest.raises(KeyboardInterrupt):
        score_file(tmp_path / "in.csv", tmp_path / "out.csv", model_dir, chunk_size=10)
    assert not (tmp_path / "out.csv").exists()
    assert len(list((tmp_path / "out.csv.parts").glob("part-*.csv"))) == 5
    monkeypatch.setattr(scoring, "_write_scored_chunk", real)
    summary = score_file(tmp_path / "in.csv", tmp_path / "out.csv", model_dir, chunk_size=10, resume=True)
    assert summary.chunks_resumed == 5 and summary.rows == 120
    assert (tmp_path / "out.csv").read_bytes() == (tmp_path / "full.csv").read_bytes()
    assert not (tmp_path / "out.csv.parts").exists()


def _die_on_row_75(values):
    """A scoring task whose worker process dies on row 75 (what an out-of-memory kill looks like)."""
    if any(isinstance(v, str) and v.endswith(" #75") for v in values):
        os._exit(9)
    return scoring._real_score_task(values)


def test_a_worker_killed_mid_run_is_a_clear_error_and_the_run_resumes(tmp_path: Path, model_dir: Path,
                                                                       monkeypatch) -> None:
    frame(120).to_csv(tmp_path / "in.csv", index=False)
    score_file(tmp_path / "in.csv", tmp_path / "full.csv", model_dir, chunk_size=10, workers=1)
    monkeypatch.setattr(scoring, "_real_score_task", scoring._score_task, raising=False)
    monkeypatch.setattr(scoring, "_score_task", _die_on_row_75)  # forked workers inherit the patch
    with pytest.raises(ScoringError, match=r"worker process ended abruptly .* run the same command with --resume"):
        score_file(tmp_path / "in.csv", tmp_path / "out.csv", model_dir, chunk_size=10, workers=1)
    assert not (tmp_path / "out.csv").exists()
    kept = len(list((tmp_path / "out.csv.parts").glob("part-*.csv")))
    assert 1 <= kept <= 7  # some of the chunks before row 75, none after
    monkeypatch.undo()
    summary = score_file(tmp_path / "in.csv", tmp_path / "out.csv", model_dir, chunk_size=10, workers=1, resume=True)
    assert summary.rows == 120 and summary.chunks_resumed == kept
    assert (tmp_path / "out.csv").read_bytes() == (tmp_path / "full.csv").read_bytes()


def test_resume_with_other_options_starts_over(tmp_path: Path, model_dir: Path) -> None:
    frame(40).to_csv(tmp_path / "in.csv", index=False)
    parts = tmp_path / "out.csv.parts"
    parts.mkdir()
    (parts / "manifest.json").write_text(json.dumps({"run": {"chunk_size": 999}}))
    (parts / "part-0000000.csv").write_text("garbage\n")
    summary = score_file(tmp_path / "in.csv", tmp_path / "out.csv", model_dir, chunk_size=10, resume=True)
    assert summary.chunks_resumed == 0
    assert "garbage" not in (tmp_path / "out.csv").read_text()
    assert len(pd.read_csv(tmp_path / "out.csv")) == 40


@pytest.mark.slow
def test_killed_process_resumes_without_losing_or_duplicating_rows(tmp_path: Path, model_dir: Path) -> None:
    corpus = pd.read_csv(DATA, dtype=str, keep_default_na=False)
    big = pd.DataFrame({"n": range(30_000), "text": np.resize(corpus["text"].to_numpy(), 30_000)})
    big.to_csv(tmp_path / "in.csv", index=False)
    cmd = [sys.executable, str(ROOT / "score.py"), str(tmp_path / "in.csv"), "-o", str(tmp_path / "out.csv"),
           "--model-dir", str(model_dir), "--chunk-size", "500", "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.DEVNULL)
    parts = tmp_path / "out.csv.parts"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(parts.glob("part-*.csv"))) < 4:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "out.csv").exists(), "the run finished before it could be killed"
    subprocess.run([*cmd, "--resume"], check=True, cwd=ROOT, stderr=subprocess.DEVNULL)
    out = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    assert out["n"].tolist() == list(range(30_000))
    clean = tmp_path / "clean.csv"
    subprocess.run([*cmd[:4], str(clean), *cmd[5:]], check=True, cwd=ROOT, stderr=subprocess.DEVNULL)
    assert (tmp_path / "out.csv").read_bytes() == clean.read_bytes()


def test_sigterm_stops_cleanly_with_the_shells_status(tmp_path: Path, model_dir: Path) -> None:
    """A job scheduler's SIGTERM ends the run like Ctrl-C (no output file, parts kept for --resume),
    with exit status 143 (128 + 15), not SIGINT's 130."""
    corpus = pd.read_csv(DATA, dtype=str, keep_default_na=False)
    big = pd.DataFrame({"n": range(30_000), "text": np.resize(corpus["text"].to_numpy(), 30_000)})
    big.to_csv(tmp_path / "in.csv", index=False)
    cmd = [sys.executable, str(ROOT / "score.py"), str(tmp_path / "in.csv"), "-o", str(tmp_path / "out.csv"),
           "--model-dir", str(model_dir), "--chunk-size", "500", "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    parts = tmp_path / "out.csv.parts"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(parts.glob("part-*.csv"))) < 2:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "interrupted" in err and "--resume" in err
    assert not (tmp_path / "out.csv").exists() and list(parts.glob("part-*.csv"))


@pytest.mark.slow
def test_workers_end_with_a_killed_parent(tmp_path: Path, model_dir: Path) -> None:
    """kill -9 of score.py must not leave its worker processes behind."""
    corpus = pd.read_csv(DATA, dtype=str, keep_default_na=False)
    pd.DataFrame({"text": np.resize(corpus["text"].to_numpy(), 20_000)}).to_csv(tmp_path / "in.csv", index=False)
    proc = subprocess.Popen([sys.executable, str(ROOT / "score.py"), str(tmp_path / "in.csv"), "-o", str(tmp_path / "out.csv"),
                             "--model-dir", str(model_dir), "--chunk-size", "500", "--workers", "2", "--no-progress"],
                            cwd=ROOT, stderr=subprocess.DEVNULL)
    parts = tmp_path / "out.csv.parts"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(parts.glob("part-*.csv"))) < 2:
        time.sleep(0.05)
    children = [int(c) for task in Path(f"/proc/{proc.pid}/task").iterdir()
                for c in (task / "children").read_text().split()]
    assert len(children) == 2
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    def alive(pid: int) -> bool:
        try:
            return "zombie" not in Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return False

    deadline = time.time() + 20
    while time.time() < deadline and any(map(alive, children)):
        time.sleep(0.1)
    assert [c for c in children if alive(c)] == [], "workers outlived their killed parent"


# -- every input row and column is kept (Parquet index, CSV blank lines) ------------------------------


def _crash_after(monkeypatch, n: int) -> None:
    real, calls = scoring._write_scored_chunk, {"n": 0}

    def crash(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > n:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(scoring, "_write_scored_chunk", crash)


def test_a_stored_parquet_index_is_an_output_column(tmp_path: Path, model_dir: Path) -> None:
    texts = ["hi", "thanks", "is the road open?", "www.spam.example buy now"]
    named = pd.DataFrame({"text": texts}, index=pd.Index(["a", "b", "c", "d"], name="cid"))
    named.to_parquet(tmp_path / "named.parquet")
    pd.DataFrame({"text": texts}, index=["w", "x", "y", "z"]).to_parquet(tmp_path / "unnamed.parquet")
    pd.DataFrame({"text": texts}).to_parquet(tmp_path / "range.parquet")  # a RangeIndex: metadata only
    multi = pd.MultiIndex.from_tuples([(1, "p"), (2, "q"), (3, "r"), (4, "s")], names=["thread", None])
    pd.DataFrame({"text": texts}, index=multi).to_parquet(tmp_path / "multi.parquet")

    score_file(tmp_path / "named.parquet", tmp_path / "named.out.parquet", model_dir, chunk_size=3)
    out = pd.read_parquet(tmp_path / "named.out.parquet")
    assert list(out.columns[:2]) == ["cid", "text"] and out["cid"].tolist() == ["a", "b", "c", "d"]
    score_file(tmp_path / "unnamed.parquet", tmp_path / "unnamed.out.csv", model_dir)
    out = pd.read_csv(tmp_path / "unnamed.out.csv", dtype=str, keep_default_na=False)
    assert out["__index_level_0__"].tolist() == ["w", "x", "y", "z"] and out["text"].tolist() == texts
    read = lambda name: pd.concat(scoring.iter_chunks(tmp_path / name, "parquet", 3))  # noqa: E731
    assert list(read("range.parquet").columns) == ["text"]
    assert read("multi.parquet")[["thread", "__index_level_1__"]].values.tolist() == [[1, "p"], [2, "q"], [3, "r"], [4, "s"]]


def test_resume_keeps_no_part_read_by_another_reader(tmp_path: Path, model_dir: Path, monkeypatch) -> None:
    pd.DataFrame({"text": [f"comment {i}" for i in range(6)]},
                 index=pd.Index([f"c{i}" for i in range(6)], name="cid")).to_parquet(tmp_path / "in.parquet")
    _crash_after(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        score_file(tmp_path / "in.parquet", tmp_path / "out.parquet", model_dir, chunk_size=2)
    monkeypatch.undo()
    manifest = tmp_path / "out.parquet.parts" / "manifest.json"
    run = json.loads(manifest.read_text())
    assert run["run"]["reader"] == scoring.READER_VERSION
    run["run"]["reader"] = 1  # a part written before the index was kept lacks the cid column
    manifest.write_text(json.dumps(run))
    summary = score_file(tmp_path / "in.parquet", tmp_path / "out.parquet", model_dir, chunk_size=2, resume=True)
    assert summary.chunks_resumed == 0 and summary.rows == 6
    assert pd.read_parquet(tmp_path / "out.parquet")["cid"].tolist() == [f"c{i}" for i in range(6)]


def test_csv_blank_lines_are_rows_and_a_final_newline_is_not(tmp_path: Path, model_dir: Path, monkeypatch) -> None:
    src = tmp_path / "in.csv"
    src.write_bytes(b"\n\ntext\nhello\n\nthanks\n\n\nok\n")  # blank lines above the header are not rows
    summary = score_file(src, tmp_path / "full.csv", model_dir, chunk_size=2)
    assert (summary.rows, summary.scored, dict(summary.errors)) == (6, 3, {"empty text": 3})
    out = pd.read_csv(tmp_path / "full.csv", dtype=str, keep_default_na=False)
    assert out["text"].tolist() == ["hello", "", "thanks", "", "", "ok"]
    assert out["error"].tolist() == ["", "empty text", "", "empty text", "empty text", ""]
    # a resumed run cuts the chunks where the first run did
    _crash_after(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        score_file(src, tmp_path / "out.csv", model_dir, chunk_size=2)
    monkeypatch.undo()
    summary = score_file(src, tmp_path / "out.csv", model_dir, chunk_size=2, resume=True)
    assert summary.chunks_resumed == 1 and summary.rows == 6
    assert (tmp_path / "out.csv").read_bytes() == (tmp_path / "full.csv").read_bytes()


def test_csv_blank_lines_keep_line_numbers_and_crlf(tmp_path: Path) -> None:
    src = tmp_path / "crlf.csv"
    src.write_bytes(b"id,text\r\n1,a\r\n\r\n2,b\r\n")
    rows = pd.concat(scoring.iter_chunks(src, "csv", 2))
    assert rows.values.tolist() == [["1", "a"], ["", ""], ["2", "b"]]
    src.write_text('\n"multi\nline",text\n1,a\n')  # blank lines above are counted in lines, not records
    assert pd.concat(scoring.iter_chunks(src, "csv", 2)).to_dict("records") == [{"multi\nline": "1", "text": "a"}]
    src.write_text("\nid,text\n1,a\n\n\n2,b,extra\n")
    with pytest.raises(ScoringError, match=r"malformed CSV: line 6: expected 2 fields \(the header's\), saw 3"):
        list(scoring.iter_chunks(src, "csv", 2))


@pytest.mark.parametrize("content, line", [
    ('id,text\n1,"unterminated quote\n2,ok\n', 2),
    ('id,text\n1,"unterminated quote\n2,ok', 2),
    ('id,text,x\n1,"two\nlines",x\n2,"open\nmore\n\nrest\n', 4),  # a closed multi-line field comes first
])
def test_an_unclosed_quote_names_the_file_and_the_line_it_opens_on(tmp_path: Path, content: str, line: int) -> None:
    src = tmp_path / "q.csv"
    src.write_text(content)
    with pytest.raises(ScoringError) as err:
        list(scoring.iter_chunks(src, "csv", 1))
    assert str(err.value).startswith(f"{src}: malformed CSV: line {line}: a quoted field opens here and is never closed")


# -- JSON Lines: fields and types are the whole file's, whatever --chunk-size is ----------------------


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_jsonl_text_key_first_seen_after_the_first_chunk_is_missing_text_above(tmp_path: Path, model_dir: Path,
                                                                                capsys) -> None:
    src = _jsonl(tmp_path / "latekey.jsonl", [{"id": 1, "deleted": True}, {"id": 2, "text": "Thank you so much!"},
                                               {"id": 3, "deleted": True}])
    assert score_cli.main([str(src), "-o", str(tmp_path / "out.jsonl"), "--model-dir", str(model_dir),
                           "--chunk-size", "1", "--workers", "1"]) == 0
    assert "scored 1 of 3 rows" in capsys.readouterr().err
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [(r["id"], r["deleted"], r["text"], r["error"]) for r in out] == [
        (1, True, None, "missing text"), (2, None, "Thank you so much!", ""), (3, True, None, "missing text")]
    assert out[1]["label"] == "support" and out[0]["action"] == "review"
    # no record has the key: the "no column" error, after the whole file was read, and nothing written
    src = _jsonl(tmp_path / "notext.jsonl", [{"id": 1, "deleted": True}, {"id": 2, "body": "x"}])
    assert score_cli.main([str(src), "-o", str(tmp_path / "n.csv"), "--model-dir", str(model_dir),
                           "--chunk-size", "1"]) == 2
    err = capsys.readouterr().err
    assert f"error: {src}: no column 'text' in any of its 2 records (fields: id, deleted, body)" in err
    assert "Traceback" not in err and not list(tmp_path.glob("n.csv*")) and not list(tmp_path.glob(".n.csv*"))


MIXED_ROWS = [
    {"id": 1, "text": "Thank you so much!", "score": 5, "n": 1, "flag": True, "tags": [1, 2], "meta": {"a": 1}},
    {"id": 2, "text": "Is the road open?", "score": 7, "n": 2.5, "flag": False, "tags": [], "meta": {"b": "x"}},
    {"id": 3, "text": "This is a lie", "score": "high", "n": None, "flag": 1, "tags": ["a"], "meta": None},
    {"id": 4, "text": 42, "score": None, "n": 3, "flag": None, "tags": None, "meta": {"a": 2, "b": "y"},
     "parent_id": 2},
    {"id": 5, "text": "www.cheap-pills.example buy now", "score": 9, "big": 10**30},
]


def test_jsonl_types_and_fields_do_not_depend_on_the_chunk_size(tmp_path: Path, model_dir: Path) -> None:
    src = _jsonl(tmp_path / "in.jsonl", MIXED_ROWS)
    for size in (1, 100):
        for fmt in ("parquet", "csv", "jsonl"):
            summary = score_file(src, tmp_path / f"out{size}.{fmt}", model_dir, chunk_size=size)
            assert (summary.rows, summary.scored, dict(summary.errors)) == (5, 4, {"text is not a string (int)": 1})
    for fmt in ("csv", "jsonl"):
        assert (tmp_path / f"out1.{fmt}").read_bytes() == (tmp_path / f"out100.{fmt}").read_bytes()
    import pyarrow as pa
    import pyarrow.parquet as pq

    one, whole = pq.read_table(tmp_path / "out1.parquet"), pq.read_table(tmp_path / "out100.parquet")
    assert one.equals(whole)
    assert whole.column_names[:9] == ["id", "text", "score", "n", "flag", "tags", "meta", "parent_id", "big"]
    col = lambda name: whole.column(name).to_pylist()  # noqa: E731
    # a field mixing types is text (strings as they are, the rest as JSON); numbers are numbers
    assert col("score") == ["5", "7", "high", None, "9"] and col("text")[3] == "42"
    assert col("flag") == ["true", "false", "1", None, None] and col("big") == [None] * 4 + [str(10**30)]
    assert col("tags") == ["[1, 2]", "[]", '["a"]', None, None]  # lists of numbers and lists of strings
    assert col("n") == [1.0, 2.5, None, 3.0, None] and whole.schema.field("n").type == pa.float64()
    assert col("parent_id") == [None, None, None, 2, None] and whole.schema.field("parent_id").type == pa.int64()
    assert col("meta") == [{"a": 1, "b": None}, {"a": None, "b": "x"}, None, {"a": 2, "b": "y"}, None]
    # CSV: a field first seen in the last chunks is a column, empty above; true stays true
    csv = pd.read_csv(tmp_path / "out1.csv", dtype=str, keep_default_na=False)
    assert csv["parent_id"].tolist() == ["", "", "", "2", ""] and csv["flag"].tolist()[:3] == ["true", "false", "1"]
    # JSON Lines: every row has every field, null where the record lacks it, values as read
    rows = [json.loads(line) for line in (tmp_path / "out1.jsonl").read_text().splitlines()]
    assert rows[0]["parent_id"] is None and rows[4]["big"] == 10**30 and rows[2]["score"] == "high"


def test_jsonl_type_of_a_field_is_decided_by_the_whole_file() -> None:
    t = scoring._json_type
    unify = scoring._unify
    assert unify(t(1), t(0.5)) == "float" and unify(t(2**60), t(0.5)) == scoring.MIXED  # a double would round 2**60+1
    assert unify(t(True), t(1)) == unify(t(1), t(True)) == scoring.MIXED
    assert unify(t({"a": 1}), t({"b": [1]})) == ("struct", (("a", "int"), ("b", ("list", "int"))))
    assert unify(t([1]), t(["a"])) == scoring.MIXED and unify(t([]), t([None, 2])) == ("list", "int")
    assert scoring._arrow_type(t({})) is None  # Parquet cannot write a struct without fields: text


def test_resume_of_a_jsonl_run_with_late_fields_and_mixed_types(tmp_path: Path, model_dir: Path, monkeypatch) -> None:
    src = _jsonl(tmp_path / "in.jsonl", MIXED_ROWS * 2)
    for fmt in ("parquet", "csv"):
        full = score_file(src, tmp_path / f"full.{fmt}", model_dir, chunk_size=2)
        _crash_after(monkeypatch, 2)
        with pytest.raises(KeyboardInterrupt):
            score_file(src, tmp_path / f"out.{fmt}", model_dir, chunk_size=2)
        monkeypatch.undo()
        manifest = json.loads((tmp_path / f"out.{fmt}.parts" / "manifest.json").read_text())
        assert manifest["run"]["reader"] == scoring.READER_VERSION == 3
        summary = score_file(src, tmp_path / f"out.{fmt}", model_dir, chunk_size=2, resume=True)
        assert summary.chunks_resumed == 2 and (summary.rows, summary.scored) == (full.rows, full.scored) == (10, 8)
        assert summary.errors == full.errors and summary.labels == full.labels
        assert (tmp_path / f"out.{fmt}").read_bytes() == (tmp_path / f"full.{fmt}").read_bytes()
        assert not (tmp_path / f"out.{fmt}.parts").exists()


def test_a_bad_jsonl_line_at_the_end_is_found_before_anything_is_scored(tmp_path: Path, model_dir: Path,
                                                                        monkeypatch) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS * 4) + "{broken\n")
    monkeypatch.setattr(scoring, "_write_scored_chunk", lambda *a, **k: pytest.fail("a chunk was scored"))
    with pytest.raises(ScoringError, match=r"in.jsonl: line 21: invalid JSON"):
        score_file(src, tmp_path / "out.parquet", model_dir, chunk_size=2)
    assert not list(tmp_path.glob("out.parquet*")) and not list(tmp_path.glob(".out.parquet*"))


@pytest.mark.parametrize("line, problem", [
    ('{"text": "FREE MP3 www.syriamp3.com", "text": "Thanks for the report"}', "the key 'text' appears twice"),
    ('{"text": "ok", "meta": {"a": 1, "a": 2}}', "the key 'a' appears twice"),
    ('{"text": "ok", "score": NaN}', "NaN is not valid JSON"),
    ('{"text": "ok", "deep": ' + "[" * 100000 + "]" * 100000 + "}", "nested too deeply"),
])
def test_a_jsonl_line_two_readers_would_read_differently_is_refused(tmp_path: Path, model_dir: Path, line: str,
                                                                     problem: str) -> None:
    """Python keeps the last of two equal keys, other readers the first: the spam text would be
    scored as "Thanks" and vanish from the output."""
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "first"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(ScoringError, match=r"in.jsonl: line 2: invalid JSON: " + re.escape(problem)):
        score_file(src, tmp_path / "out.csv", model_dir)
    assert not list(tmp_path.glob("out.csv*"))


def test_a_jsonl_file_may_start_with_a_byte_order_mark(tmp_path: Path, model_dir: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes(b'\xef\xbb\xbf{"id": 1, "text": "Thanks for the report"}\n{"id": 2, "text": "Is it confirmed?"}\n')
    score_file(src, tmp_path / "out.csv", model_dir)
    out = pd.read_csv(tmp_path / "out.csv")
    assert out["id"].tolist() == [1, 2] and out["label"].notna().all()
