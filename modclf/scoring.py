"""Offline batch scoring of comment files (CSV, JSON Lines, Parquet).

Design, so that memory stays flat, nothing is lost and a killed run can continue:

- the input is read in chunks of ``chunk_size`` rows;
- each scored chunk is written atomically as its own numbered part file in ``OUTPUT.parts/``,
  together with a manifest describing the run (input, model, options);
- ``--resume`` keeps the parts already written by a compatible earlier run and scores the rest;
- at the end the parts are joined, in order, into a temporary file that is renamed to OUTPUT, and
  the parts directory is removed. OUTPUT therefore either does not exist or is complete.

And so that it is fast by default (``workers=0``: one worker process per available core):

- the model loads in a background thread while the main thread imports pandas and reads the
  first chunk; scoring needs only the fast path's saved arrays, not the scikit-learn pipeline
  (:meth:`modclf.moderator.LoadedModel.load` with ``lazy=True``);
- worker processes are forked after the model is loaded and warmed up, so they share its memory
  and pay none of the start-up; an input of one chunk is scored in this process, together with
  forked workers when it is large enough to be worth sharing;
- the main process reads and dispatches chunks while the workers score and write parts, and it
  appends finished CSV / JSON Lines parts to the output as soon as their turn comes, so the join at
  the end has only the last part left to copy.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from .errors import ScoringError
from .labels import LABELS
from .model import DEFAULT_MODEL_DIR

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from .moderator import Moderator

log = logging.getLogger(__name__)

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
#: Rows per chunk (and part file): small enough that the workers finish together (the last chunk is
#: the only one a core may wait for) and memory stays low, large enough that per-part costs vanish.
DEFAULT_CHUNK_SIZE = 10_000
#: An input of a single chunk with at least this many rows is scored by several processes at once
#: (below it, forking costs more than it saves).
SHARE_MIN_ROWS = 500
#: ``workers`` value meaning one worker process per core this process may run on.
AUTO_WORKERS = 0
#: A comment the loader scores before any worker is forked: every kernel, the language model and
#: the policy are then loaded once, in the parent, and shared by the workers.
_WARM_UP_TEXT = "Thanks for the report, is the road to the airport open again? www.example.com"


def detect_format(path: str | Path, option: str | None = None) -> str:
    if option:
        return option
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ScoringError(f"{path}: cannot tell the format from the extension; use .csv, .jsonl or .parquet")
    return fmt


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def resolve_workers(workers: int | str) -> int:
    """``workers`` as a number of processes: ``"auto"`` or 0 -> :func:`available_cores`."""
    if workers == "auto" or workers == AUTO_WORKERS:
        return available_cores()
    if not isinstance(workers, int) or workers < 1:
        raise ScoringError("--chunk-size and --workers must be at least 1 (--workers may also be auto)")
    return workers


# ---------------------------------------------------------------- reading


def _iter_csv(path: Path, chunk_size: int) -> Iterator[pd.DataFrame]:
    import pandas as pd

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
    import pandas as pd

    # object dtype keeps values as written (an int next to a null stays an int, not 42.0)
    return pd.DataFrame(records, dtype=object)


def _iter_parquet(path: Path, chunk_size: int) -> Iterator[pd.DataFrame]:
    import pyarrow as pa
    import pyarrow.parquet as pq

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
    from .atomic import atomic_path

    with atomic_path(path) as tmp:
        if fmt == "csv":
            _write_csv_rows(df, tmp)
        elif fmt == "jsonl":
            df.to_json(tmp, orient="records", lines=True, force_ascii=False)
        else:
            import pyarrow.parquet as pq

            pq.write_table(_to_arrow(df), tmp)


def _write_csv_rows(df: pd.DataFrame, path: Path) -> None:
    """CSV rows without a header, by Arrow's C++ writer (~10x pandas.to_csv, which formats every
    float in Python); floats keep their shortest round-trip form, text values are quoted.
    Columns Arrow cannot write as CSV (nested JSON values) fall back to pandas for that part.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from .csvsafe import safe_frame

    df = safe_frame(df)  # comments are attacker-written: no cell may start a spreadsheet formula
    try:
        pacsv.write_csv(_to_arrow(df), path, pacsv.WriteOptions(include_header=False))
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        df.to_csv(path, index=False, header=False, lineterminator="\n")


def _to_arrow(df: pd.DataFrame) -> pa.Table:
    """Arrow table of a chunk; a column mixing types (JSON allows it, Parquet does not) becomes text."""
    import pyarrow as pa

    try:
        return pa.Table.from_pandas(df, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        fixed = df.copy()
        for col in fixed.columns[fixed.dtypes == object]:
            values = fixed[col]
            if values.map(type).nunique() > 1:
                fixed[col] = values.map(lambda v: v if v is None or isinstance(v, str) else json.dumps(v))
        return pa.Table.from_pandas(fixed, preserve_index=False)


def _csv_header(columns: list[str]) -> bytes:
    import pandas as pd

    from .csvsafe import safe_cell

    header = pd.DataFrame(columns=[safe_cell(str(c)) for c in columns])
    return header.to_csv(index=False, lineterminator="\n").encode()


def _append_file(src: Path, out: Any) -> None:
    """Append ``src`` to the open binary file ``out`` (in the kernel where it can: no copy through Python)."""
    out.flush()
    with open(src, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        offset = 0
        try:
            while offset < size:
                sent = os.sendfile(out.fileno(), fh.fileno(), offset, size - offset)
                if sent == 0:
                    break
                offset += sent
        except (AttributeError, OSError):
            fh.seek(offset)
            shutil.copyfileobj(fh, out, 1 << 20)
            return
        if offset < size:  # pragma: no cover - the part shrank under us
            raise ScoringError(f"{src}: part file changed while it was being joined")


class _Assembler:
    """The output file, built in a temporary file next to it and renamed into place at the end.

    CSV and JSON Lines parts are appended as soon as every earlier part is done, while later chunks
    are still being scored; Parquet parts are joined at the end (the output schema is the union of
    the parts' schemas, known only then).
    """

    def __init__(self, output: Path, fmt: str):
        from .atomic import atomic_path

        self.output, self.fmt = output, fmt
        self._context = atomic_path(output)
        self.tmp: Path = self._context.__enter__()
        self._fh: Any = None
        self._parts: dict[int, Path] = {}
        self._next = 0

    def start(self, columns: list[str]) -> None:
        """Begin the output (the CSV header needs the columns)."""
        if self.fmt != "parquet":
            self._fh = open(self.tmp, "wb")
            if self.fmt == "csv":
                self._fh.write(_csv_header(columns))

    def add(self, idx: int, part: Path) -> None:
        """Part ``idx`` is complete; append it and any following parts that are waiting."""
        self._parts[idx] = part
        if self._fh is None:
            return
        while self._next in self._parts:
            _append_file(self._parts[self._next], self._fh)
            self._next += 1

    def finish(self, columns: list[str], n_parts: int) -> None:
        """Complete the output and rename it into place."""
        if self.fmt == "parquet":
            _join_parquet([self._parts[i] for i in range(n_parts)], columns, self.tmp)
        else:
            if self._next != n_parts:
                raise ScoringError(f"internal error: {n_parts - self._next} part(s) missing from {self.output}")
            self._fh.close()
            self._fh = None
        self._context.__exit__(None, None, None)

    def abort(self, exc: BaseException) -> None:
        """Remove the temporary output (a previous OUTPUT stays untouched)."""
        if self._fh is not None:
            self._fh.close()
        self._context.__exit__(type(exc), exc, exc.__traceback__)


def _join_parquet(parts: list[Path], columns: list[str], tmp: Path) -> None:
    """Concatenate Parquet parts in order into ``tmp``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

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
    workers: int = 1

    def add(self, other: dict[str, Any]) -> None:
        self.rows += other["rows"]
        self.scored += other["scored"]
        self.errors.update(other["errors"])
        self.labels.update(other["labels"])
        self.actions.update(other.get("actions", {}))

    def format(self) -> str:
        rate = self.rows / self.seconds if self.seconds else 0.0
        lines = [f"scored {self.scored} of {self.rows} rows in {self.seconds:.1f}s ({rate:,.0f} rows/s, "
                 f"{self.workers} worker{'s' if self.workers != 1 else ''})"]
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
    ``fast=False`` predicts with the plain scikit-learn pipeline (identical numbers, slower).

    With the fast path the scikit-learn pipeline is not unpickled unless the model directory lacks
    the fast path's saved arrays (scoring never needs it otherwise)."""
    from .moderator import LoadedModel, Moderator
    from .policy import default_policy_path, load_policy

    return Moderator(LoadedModel.load(model_dir, fast=fast, lazy=True), load_policy(policy or default_policy_path()))


def _init_worker(model_dir: str, policy: str | None, fast: bool) -> None:
    """Worker start-up where processes cannot be forked from the loaded parent (spawn)."""
    global _WORKER_MODERATOR
    _WORKER_MODERATOR = load_moderator(model_dir, policy, fast)


def _forked_worker_init(parent: int) -> None:
    """A forked worker ends with its parent and leaves Ctrl-C to it.

    A worker holds copies of both ends of the pool's pipes, so when the parent is killed (kill -9,
    out of memory) nothing would ever wake it: it asks the kernel for SIGTERM when the parent
    dies. Ctrl-C reaches the whole process group; the parent alone handles it (it stops dispatching,
    waits for the chunks under way and exits), so workers do not print tracebacks of their own.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _warm_up(moderator: "Moderator") -> None:
    """Score one comment end to end, so that everything loaded on first use (kernels, the language
    model, pandas' code paths) is loaded before workers are forked."""
    import pandas as pd

    from .predict import score_frame

    score_frame(moderator, pd.DataFrame({"text": [_WARM_UP_TEXT, ""]}))


class _Loader(threading.Thread):
    """Loads (and warms up) the moderator while the main thread imports pandas and reads input."""

    def __init__(self, model_dir: str | Path, policy: str | Path | None, fast: bool):
        super().__init__(name="modclf-score-loader", daemon=True)
        self._args = (model_dir, policy, fast)
        self.moderator: "Moderator | None" = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            moderator = load_moderator(*self._args)
            _warm_up(moderator)
            self.moderator = moderator
        except BaseException as exc:  # re-raised in the main thread by result()
            self.error = exc

    def result(self) -> "Moderator":
        self.join()
        if self.error is not None:
            raise self.error
        assert self.moderator is not None
        return self.moderator


def _score_rows(df: pd.DataFrame, text_column: str, prefix: str, moderator: "Moderator | None" = None) -> pd.DataFrame:
    """``df`` with the result columns (in a worker: with the moderator inherited from the parent)."""
    from .predict import score_frame

    moderator = moderator or _WORKER_MODERATOR
    assert moderator is not None
    return score_frame(moderator, df, text_column, prefix)


def _chunk_stats(out: pd.DataFrame, prefix: str) -> dict[str, Any]:
    err = out[prefix + "error"]
    return {
        "rows": len(out),
        "scored": int((err == "").sum()),
        "errors": Counter(err[err != ""].tolist()),
        "labels": Counter(out[prefix + "label"][err == ""].tolist()),
        "actions": Counter(out[prefix + "action"].tolist()),
    }


def _score_chunk(df: pd.DataFrame, part: Path, fmt: str, text_column: str, prefix: str,
                 moderator: "Moderator | None" = None) -> dict[str, Any]:
    out = _score_rows(df, text_column, prefix, moderator)
    _write_part(out, part, fmt)
    return _chunk_stats(out, prefix)


def _score_chunk_shared(df: pd.DataFrame, part: Path, fmt: str, text_column: str, prefix: str,
                        moderator: "Moderator", pool: Any, shares: int) -> dict[str, Any]:
    """One chunk scored by this process and ``shares - 1`` workers at once (an input of a single
    chunk would otherwise keep one core busy and leave the others idle). Rows are scored
    independently of each other, so the part is the same as when one process scores it."""
    import pandas as pd

    bounds = [len(df) * i // shares for i in range(shares + 1)]
    slices = [df.iloc[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    futures = [pool.submit(_score_rows, rows, text_column, prefix) for rows in slices[1:]]
    out = pd.concat([_score_rows(slices[0], text_column, prefix, moderator), *(f.result() for f in futures)])
    _write_part(out, part, fmt)
    return _chunk_stats(out, prefix)


def _check_columns(df: pd.DataFrame, input_path: Path, text_column: str, prefix: str) -> list[str]:
    from .predict import RESULT_COLUMNS

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


def _pool(workers: int, moderator: "Moderator", model_dir: str | Path, policy: str | Path | None, fast: bool) -> Any:
    """A pool of ``workers`` processes holding ``moderator``: forked from this process (they share
    its loaded model and pay no start-up), or where fork is unavailable, each loading its own."""
    from concurrent.futures import ProcessPoolExecutor

    global _WORKER_MODERATOR
    if "fork" in multiprocessing.get_all_start_methods() and sys.platform.startswith("linux"):
        _WORKER_MODERATOR = moderator  # inherited by the forked workers
        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                   initializer=_forked_worker_init, initargs=(os.getpid(),))
    return ProcessPoolExecutor(workers, initializer=_init_worker,
                               initargs=(str(model_dir), str(policy) if policy else None, fast))


def _release_worker_moderator() -> None:
    """Forget the moderator handed to forked workers (the caller may hold it or let it go)."""
    global _WORKER_MODERATOR
    _WORKER_MODERATOR = None


def _progress_bar(name: str, progress: bool | None) -> Any:
    """A tqdm bar when progress is wanted (default: stderr is a terminal); else a no-op stand-in."""
    if progress is False or (progress is None and not sys.stderr.isatty()):
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(desc=f"scoring {name}", unit="rows", leave=False, file=sys.stderr)


class _Prefetch:
    """Iterate ``chunks`` one chunk ahead in a background thread: in a single process, the next chunk
    is read (pandas' CSV tokenizer releases the GIL) while this one is scored. An error of the
    reader is raised here, in order, after the chunks before it."""

    _END = object()

    def __init__(self, chunks: Iterator[Any]):
        import queue

        self._queue: Any = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(chunks,), name="modclf-score-reader", daemon=True)
        self._thread.start()

    def _run(self, chunks: Iterator[Any]) -> None:
        try:
            for chunk in chunks:
                if not self._put((chunk, None)):
                    return
            self._put((self._END, None))
        except BaseException as exc:  # handed to the consumer
            self._put((None, exc))

    def _put(self, item: tuple[Any, BaseException | None]) -> bool:
        import queue

        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[Any]:
        try:
            while True:
                chunk, exc = self._queue.get()
                if exc is not None:
                    raise exc
                if chunk is self._END:
                    return
                yield chunk
        finally:
            self.close()

    def close(self) -> None:
        """Stop reading ahead (the consumer is done or failed)."""
        self._stop.set()


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def score_file(
    input_path: str | Path,
    output_path: str | Path,
    model_dir: str | Path = DEFAULT_MODEL_DIR,
    text_column: str = "text",
    prefix: str = "",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    workers: int | str = 1,
    resume: bool = False,
    fast: bool = True,
    input_format: str | None = None,
    output_format: str | None = None,
    progress: bool | None = None,
    policy: str | Path | None = None,
) -> ScoreSummary:
    """Score ``input_path`` into ``output_path``; see the module docstring for the guarantees.

    ``workers``: processes scoring in parallel; ``"auto"`` or 0 for one per available core (what
    ``modclf score`` does by default). An input of a single chunk is scored in this process, shared
    with forked workers when it has at least SHARE_MIN_ROWS rows.
    ``policy`` is the moderation policy file that decides the ``action`` column (default:
    ``$MODCLF_POLICY`` or the shipped policy).
    """
    start = time.perf_counter()
    input_path, output_path = Path(input_path), Path(output_path)
    in_fmt, out_fmt = detect_format(input_path, input_format), detect_format(output_path, output_format)
    if chunk_size < 1:
        raise ScoringError("--chunk-size and --workers must be at least 1")
    workers = resolve_workers(workers)
    if input_path.resolve() == output_path.resolve():
        raise ScoringError(f"{output_path}: the output would overwrite the input")
    if not input_path.is_file():
        raise ScoringError(f"{input_path}: input file not found")
    loader = _Loader(model_dir, policy, fast)
    loader.start()  # the model loads while pandas is imported and the first chunk is read

    try:
        chunks = iter_chunks(input_path, in_fmt, chunk_size)
        first = next(chunks, None)
        if first is None:
            raise ScoringError(f"{input_path}: the input has no rows") if in_fmt != "csv" else ScoringError(
                f"{input_path}: the input has a header but no rows")
        columns = _check_columns(first, input_path, text_column, prefix)
    except BaseException:
        loader.join()  # no thread left loading the model behind an error (or at interpreter exit)
        raise
    input_columns = list(first.columns)
    moderator = loader.result()  # ModelError / PolicyError surface here

    stat = input_path.stat()
    manifest = {
        "input": str(input_path.resolve()),
        "input_size": stat.st_size,
        "input_mtime_ns": stat.st_mtime_ns,
        "input_format": in_fmt,
        "output_format": out_fmt,
        "chunk_size": chunk_size,
        "text_column": text_column,
        "prefix": prefix,
        "model_sha256": moderator.model.meta["model_sha256"],
        "policy_sha256": moderator.policy.sha256,
    }
    parts_dir = output_path.with_name(output_path.name + ".parts")
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

    summary = ScoreSummary()
    second = next(chunks, None) if workers > 1 else None  # more than one chunk: worth the workers
    pending: dict[Any, tuple[int, Path]] = {}
    pool: Any = None
    rest: _Prefetch | None = None
    bar: Any = _NoBar()
    assembler = _Assembler(output_path, out_fmt)

    def finished(idx: int, part: Path, stats: dict[str, Any]) -> None:
        _record_part_stats(parts_dir, idx, stats)
        summary.add(stats)
        bar.update(stats["rows"])
        assembler.add(idx, part)

    def collect(block: bool) -> None:
        from concurrent.futures import FIRST_COMPLETED, wait

        if not pending:
            return
        done = wait(list(pending), return_when=FIRST_COMPLETED)[0] if block else [f for f in pending if f.done()]
        for fut in done:
            idx, part = pending.pop(fut)
            finished(idx, part, fut.result())

    def all_chunks() -> Iterator[pd.DataFrame]:
        yield first
        if second is not None:
            yield second
        yield from rest if rest is not None else chunks

    # a single chunk big enough to share: this process and workers - 1 forked ones score it together
    share = workers > 1 and second is None and len(first) >= SHARE_MIN_ROWS and str(0) not in done_stats
    n_parts = 0
    try:
        if second is not None:
            pool = _pool(workers, moderator, model_dir, policy, fast)
            summary.workers = workers
        elif share:
            pool = _pool(workers - 1, moderator, model_dir, policy, fast)
            summary.workers = workers
        elif workers == 1:
            rest = _Prefetch(chunks)  # in one process, the next chunk is read while this one is scored
        assembler.start(columns)
        bar = _progress_bar(input_path.name, progress)
        for idx, chunk in enumerate(all_chunks()):
            if idx:
                chunk = _conform(chunk, input_columns, input_path, out_fmt, idx * chunk_size)
            part = parts_dir / f"part-{idx:07d}.{out_fmt}"
            n_parts = idx + 1
            if str(idx) in done_stats and part.exists():
                summary.add(_decode_stats(done_stats[str(idx)]))
                summary.chunks_resumed += 1
                bar.update(len(chunk))
                assembler.add(idx, part)
                continue
            if share:
                finished(idx, part, _score_chunk_shared(chunk, part, out_fmt, text_column, prefix, moderator, pool,
                                                        workers))
            elif pool is None:
                finished(idx, part, _score_chunk(chunk, part, out_fmt, text_column, prefix, moderator))
            else:
                while len(pending) >= 2 * workers:  # bound memory: at most 2 chunks in flight per worker
                    collect(block=True)
                pending[pool.submit(_score_chunk, chunk, part, out_fmt, text_column, prefix)] = (idx, part)
                collect(block=False)
        while pending:
            collect(block=True)
        assembler.finish(columns, n_parts)
    except BaseException as exc:
        assembler.abort(exc)
        raise
    finally:
        bar.close()
        if rest is not None:
            rest.close()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
            _release_worker_moderator()
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
