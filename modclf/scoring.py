"""Offline batch scoring of comment files (CSV, JSON Lines, Parquet).

Design, so that memory stays flat, nothing is lost and a killed run can continue:

- the input is read in chunks of ``chunk_size`` rows;
- each scored chunk is written atomically as its own numbered part file in ``OUTPUT.parts/``,
  together with a manifest describing the run (input, model, options);
- ``--resume`` keeps the parts already written by a compatible earlier run and scores the rest;
- at the end the parts are joined, in order, into a temporary file that is renamed to OUTPUT, and
  the parts directory is removed. OUTPUT therefore either does not exist or is complete.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from .errors import ScoringError
from .atomic import atomic_path
from .csvsafe import safe_cell, safe_frame
from .labels import LABELS

if TYPE_CHECKING:
    from .moderator import Moderator
from .model import DEFAULT_MODEL_DIR, sha256_file
from .predict import RESULT_COLUMNS, score_frame

log = logging.getLogger(__name__)

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
DEFAULT_CHUNK_SIZE = 20_000


def detect_format(path: str | Path, option: str | None = None) -> str:
    if option:
        return option
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ScoringError(f"{path}: cannot tell the format from the extension; use .csv, .jsonl or .parquet")
    return fmt


# ---------------------------------------------------------------- reading


def _iter_csv(path: Path, chunk_size: int) -> Iterator[pd.DataFrame]:
    try:
        reader = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[], chunksize=chunk_size,
                             encoding="utf-8", encoding_errors="strict")
        for chunk in reader:
            yield chunk
    except UnicodeDecodeError as exc:
        raise ScoringError(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start} of a block); save it as UTF-8") from None
    except pd.errors.EmptyDataError:
        raise ScoringError(f"{path}: the file is empty (a CSV needs at least a header row)") from None
    except pd.errors.ParserError as exc:
        raise ScoringError(f"{path}: malformed CSV: {exc}") from None


def _iter_jsonl(path: Path, chunk_size: int) -> Iterator[pd.DataFrame]:
    records: list[dict[str, Any]] = []
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise ScoringError(f"{path}: line {lineno}: not valid UTF-8") from None
            if not line.strip():
                raise ScoringError(f"{path}: line {lineno}: empty line (every line must be one JSON object)")
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ScoringError(f"{path}: line {lineno}: invalid JSON: {exc.msg} (column {exc.colno})") from None
            if not isinstance(obj, dict):
                raise ScoringError(f"{path}: line {lineno}: expected a JSON object, got {type(obj).__name__}")
            records.append(obj)
            if len(records) >= chunk_size:
                yield _records_frame(records)
                records = []
    if records:
        yield _records_frame(records)


def _records_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    # object dtype keeps values as written (an int next to a null stays an int, not 42.0)
    return pd.DataFrame(records, dtype=object)


def _iter_parquet(path: Path, chunk_size: int) -> Iterator[pd.DataFrame]:
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ScoringError(f"{path}: not a readable Parquet file: {exc}") from None
    for batch in pf.iter_batches(batch_size=chunk_size):
        yield batch.to_pandas()


def iter_chunks(path: str | Path, fmt: str, chunk_size: int) -> Iterator[pd.DataFrame]:
    """Yield the input as DataFrames of at most ``chunk_size`` rows, in file order."""
    path = Path(path)
    if not path.is_file():
        raise ScoringError(f"{path}: input file not found")
    readers = {"csv": _iter_csv, "jsonl": _iter_jsonl, "parquet": _iter_parquet}
    return readers[fmt](path, chunk_size)


# ---------------------------------------------------------------- writing


def _write_part(df: pd.DataFrame, path: Path, fmt: str) -> None:
    """Write one part atomically (modclf.atomic)."""
    with atomic_path(path) as tmp:
        if fmt == "csv":
            _write_csv_rows(df, tmp)
        elif fmt == "jsonl":
            df.to_json(tmp, orient="records", lines=True, force_ascii=False)
        else:
            pq.write_table(_to_arrow(df), tmp)


def _write_csv_rows(df: pd.DataFrame, path: Path) -> None:
    """CSV rows without a header, by Arrow's C++ writer (~10x pandas.to_csv, which formats every
    float in Python); floats keep their shortest round-trip form, text values are quoted.
    Columns Arrow cannot write as CSV (nested JSON values) fall back to pandas for that part.
    """
    df = safe_frame(df)  # comments are attacker-written: no cell may start a spreadsheet formula
    try:
        pacsv.write_csv(_to_arrow(df), path, pacsv.WriteOptions(include_header=False))
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        df.to_csv(path, index=False, header=False, lineterminator="\n")


def _to_arrow(df: pd.DataFrame) -> pa.Table:
    """Arrow table of a chunk; a column mixing types (JSON allows it, Parquet does not) becomes text."""
    try:
        return pa.Table.from_pandas(df, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        fixed = df.copy()
        for col in fixed.columns[fixed.dtypes == object]:
            values = fixed[col]
            if values.map(type).nunique() > 1:
                fixed[col] = values.map(lambda v: v if v is None or isinstance(v, str) else json.dumps(v))
        return pa.Table.from_pandas(fixed, preserve_index=False)


def _join_parts(parts: list[Path], columns: list[str], output: Path, fmt: str) -> None:
    """Concatenate parts in order into a temporary file next to ``output``, then rename it."""
    with atomic_path(output) as tmp:
        if fmt == "parquet":
            # Types are inferred per chunk (a JSONL column may be all-null in one chunk and text in
            # the next), so the output schema is the permissive union of the parts' schemas.
            schemas = [pq.read_schema(p) for p in parts]
            try:
                schema = pa.unify_schemas(schemas, promote_options="permissive") if schemas else pa.schema(
                    [(c, pa.string()) for c in columns])
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise ScoringError(f"a column changes type within the input, cannot write Parquet: {exc}") from None
            schema = schema.remove_metadata()
            with pq.ParquetWriter(tmp, schema) as writer:
                for part in parts:
                    writer.write_table(pq.read_table(part).select(schema.names).cast(schema))
        else:
            with open(tmp, "wb") as out:
                if fmt == "csv":
                    header = pd.DataFrame(columns=[safe_cell(str(c)) for c in columns])
                    out.write(header.to_csv(index=False, lineterminator="\n").encode())
                for part in parts:
                    with open(part, "rb") as fh:
                        shutil.copyfileobj(fh, out, 1 << 20)


# ---------------------------------------------------------------- the run


@dataclass
class ScoreSummary:
    rows: int = 0
    scored: int = 0
    errors: Counter = field(default_factory=Counter)
    labels: Counter = field(default_factory=Counter)
    actions: Counter = field(default_factory=Counter)
    chunks_resumed: int = 0
    seconds: float = 0.0

    def add(self, other: dict[str, Any]) -> None:
        self.rows += other["rows"]
        self.scored += other["scored"]
        self.errors.update(other["errors"])
        self.labels.update(other["labels"])
        self.actions.update(other.get("actions", {}))

    def format(self) -> str:
        rate = self.rows / self.seconds if self.seconds else 0.0
        lines = [f"scored {self.scored} of {self.rows} rows in {self.seconds:.1f}s ({rate:,.0f} rows/s)"]
        if self.chunks_resumed:
            lines.append(f"resumed: {self.chunks_resumed} chunk(s) kept from the interrupted run")
        lines.append("labels: " + ", ".join(f"{label} {self.labels.get(label, 0)}" for label in LABELS))
        lines.append("actions: " + ", ".join(f"{a} {self.actions.get(a, 0)}" for a in ("approve", "review", "reject")))
        if self.errors:
            lines.append(
                f"rows not scored (kept in the output with an empty label and an 'error'): {sum(self.errors.values())}: "
                + ", ".join(f"{reason} {n}" for reason, n in sorted(self.errors.items()))
            )
        return "\n".join(lines)


_WORKER_MODERATOR: "Moderator | None" = None


def load_moderator(model_dir: str | Path, policy: str | Path | None = None, fast: bool = True) -> "Moderator":
    """The one loader (sha256 check, fast path self-checked against scikit-learn) plus the policy;
    ``fast=False`` predicts with the plain scikit-learn pipeline (identical numbers, slower)."""
    from .moderator import LoadedModel, Moderator
    from .policy import default_policy_path, load_policy

    return Moderator(LoadedModel.load(model_dir, fast=fast), load_policy(policy or default_policy_path()))


def _init_worker(model_dir: str, policy: str | None, fast: bool) -> None:
    global _WORKER_MODERATOR
    _WORKER_MODERATOR = load_moderator(model_dir, policy, fast)


def _score_chunk(df: pd.DataFrame, part: Path, fmt: str, text_column: str, prefix: str,
                 moderator: "Moderator | None" = None) -> dict[str, Any]:
    moderator = moderator or _WORKER_MODERATOR
    assert moderator is not None
    out = score_frame(moderator, df, text_column, prefix)
    _write_part(out, part, fmt)
    err = out[prefix + "error"]
    return {
        "rows": len(out),
        "scored": int((err == "").sum()),
        "errors": Counter(err[err != ""].tolist()),
        "labels": Counter(out[prefix + "label"][err == ""].tolist()),
        "actions": Counter(out[prefix + "action"].tolist()),
    }


def _check_columns(df: pd.DataFrame, input_path: Path, text_column: str, prefix: str) -> list[str]:
    if text_column not in df.columns:
        raise ScoringError(
            f"{input_path}: no column {text_column!r} (columns: {', '.join(map(str, df.columns)) or 'none'}); "
            "choose the text column with --text-column"
        )
    clash = [prefix + c for c in RESULT_COLUMNS if prefix + c in df.columns]
    if clash:
        raise ScoringError(
            f"{input_path}: the input already has column(s) {', '.join(clash)}, which scoring adds; "
            "use --prefix (e.g. --prefix pred_) to name the output columns differently"
        )
    return [*map(str, df.columns), *(prefix + c for c in RESULT_COLUMNS)]


def score_file(
    input_path: str | Path,
    output_path: str | Path,
    model_dir: str | Path = DEFAULT_MODEL_DIR,
    text_column: str = "text",
    prefix: str = "",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    workers: int = 1,
    resume: bool = False,
    fast: bool = True,
    input_format: str | None = None,
    output_format: str | None = None,
    progress: bool | None = None,
    policy: str | Path | None = None,
) -> ScoreSummary:
    """Score ``input_path`` into ``output_path``; see the module docstring for the guarantees.

    ``policy`` is the moderation policy file that decides the ``action`` column (default:
    ``$MODCLF_POLICY`` or the shipped policy).
    """
    input_path, output_path = Path(input_path), Path(output_path)
    in_fmt, out_fmt = detect_format(input_path, input_format), detect_format(output_path, output_format)
    if chunk_size < 1 or workers < 1:
        raise ScoringError("--chunk-size and --workers must be at least 1")
    if input_path.resolve() == output_path.resolve():
        raise ScoringError(f"{output_path}: the output would overwrite the input")
    if not input_path.is_file():
        raise ScoringError(f"{input_path}: input file not found")
    from .model import read_meta
    from .policy import default_policy_path, load_policy

    model_sha = read_meta(model_dir)["model_sha256"]
    policy_sha = load_policy(policy or default_policy_path()).sha256
    parts_dir = output_path.with_name(output_path.name + ".parts")
    manifest = {
        "input": str(input_path.resolve()),
        "input_size": input_path.stat().st_size,
        "input_mtime_ns": input_path.stat().st_mtime_ns,
        "input_format": in_fmt,
        "output_format": out_fmt,
        "chunk_size": chunk_size,
        "text_column": text_column,
        "prefix": prefix,
        "model_sha256": model_sha,
        "policy_sha256": policy_sha,
    }
    summary = ScoreSummary()
    if parts_dir.exists():
        old = _read_manifest(parts_dir)
        if resume and old is not None and old.get("run") == manifest:
            log.info("resuming from %s", parts_dir)
        else:
            if resume:
                log.warning("cannot resume from %s (different input, model or options); starting over", parts_dir)
            shutil.rmtree(parts_dir)
    parts_dir.mkdir(parents=True, exist_ok=True)
    done_stats = _read_part_stats(parts_dir) if resume else {}
    _write_manifest(parts_dir, {"run": manifest})

    start = time.perf_counter()
    columns: list[str] | None = None
    parts: list[Path] = []
    moderator = load_moderator(model_dir, policy, fast)  # fails here, before any worker starts
    pool = ProcessPoolExecutor(workers, initializer=_init_worker,
                               initargs=(str(model_dir), str(policy) if policy else None, fast)) if workers > 1 else None
    pending: dict[Future, int] = {}

    def collect(block: bool) -> None:
        if not pending:
            return
        finished, _ = wait(list(pending), return_when=FIRST_COMPLETED) if block else (
            [f for f in pending if f.done()], None)
        for fut in finished:
            idx = pending.pop(fut)
            stats = fut.result()
            _record_part_stats(parts_dir, idx, stats)
            summary.add(stats)
            bar.update(stats["rows"])

    bar = tqdm(desc=f"scoring {input_path.name}", unit="rows", disable=(not progress) if progress is not None else None,
               leave=False, file=sys.stderr)
    try:
        for idx, chunk in enumerate(iter_chunks(input_path, in_fmt, chunk_size)):
            if columns is None:
                columns = _check_columns(chunk, input_path, text_column, prefix)
                input_columns = list(chunk.columns)
            else:
                chunk = _conform(chunk, input_columns, input_path, out_fmt, idx * chunk_size)
            part = parts_dir / f"part-{idx:07d}.{out_fmt}"
            parts.append(part)
            if str(idx) in done_stats and part.exists():
                summary.add(_decode_stats(done_stats[str(idx)]))
                summary.chunks_resumed += 1
                bar.update(len(chunk))
                continue
            if pool is None:
                stats = _score_chunk(chunk, part, out_fmt, text_column, prefix, moderator)
                _record_part_stats(parts_dir, idx, stats)
                summary.add(stats)
                bar.update(stats["rows"])
            else:
                while len(pending) >= 2 * workers:  # bound memory: at most 2 chunks in flight per worker
                    collect(block=True)
                pending[pool.submit(_score_chunk, chunk, part, out_fmt, text_column, prefix)] = idx
        while pending:
            collect(block=True)
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    if columns is None:
        raise ScoringError(f"{input_path}: the input has no rows") if in_fmt != "csv" else ScoringError(
            f"{input_path}: the input has a header but no rows")
    _join_parts(parts, columns, output_path, out_fmt)
    shutil.rmtree(parts_dir, ignore_errors=True)
    summary.seconds = time.perf_counter() - start
    return summary


def _conform(chunk: pd.DataFrame, input_columns: list[str], input_path: Path, out_fmt: str, first_row: int) -> pd.DataFrame:
    """Give a later chunk the first chunk's columns (JSON Lines records need not all have every key)."""
    extra = [c for c in chunk.columns if c not in input_columns]
    if extra and out_fmt != "jsonl":
        raise ScoringError(
            f"{input_path}: field(s) {', '.join(map(repr, extra))} first appear after row {first_row}, so they "
            f"cannot be columns of a {out_fmt} output written as a stream; write .jsonl output instead"
        )
    for c in input_columns:
        if c not in chunk.columns:
            chunk[c] = None
    return chunk[input_columns + extra]


def _read_manifest(parts_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((parts_dir / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _write_manifest(parts_dir: Path, manifest: dict[str, Any]) -> None:
    from .model import write_json

    write_json(parts_dir / "manifest.json", manifest)


def _record_part_stats(parts_dir: Path, idx: int, stats: dict[str, Any]) -> None:
    """Append one line per finished part; a torn last line (killed mid-write) is ignored on resume."""
    line = json.dumps({"part": idx, **{k: dict(v) if isinstance(v, Counter) else v for k, v in stats.items()}})
    with open(parts_dir / "done.jsonl", "a", encoding="utf-8") as fh:
        fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _read_part_stats(parts_dir: Path) -> dict[str, dict[str, Any]]:
    done: dict[str, dict[str, Any]] = {}
    try:
        with open(parts_dir / "done.jsonl", encoding="utf-8") as fh:
            for line in fh:
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    continue
                done[str(obj["part"])] = obj
    except OSError:
        pass
    return done


def _decode_stats(obj: dict[str, Any]) -> dict[str, Any]:
    return {"rows": obj["rows"], "scored": obj["scored"], "errors": Counter(obj["errors"]), "labels": Counter(obj["labels"]),
            "actions": Counter(obj.get("actions", {}))}
