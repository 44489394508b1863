"""Offline batch scoring of comment files (CSV, JSON Lines, Parquet).

Design, so that memory stays flat, nothing is lost and a killed run can continue:

- the input is read in chunks of ``chunk_size`` rows; a JSON Lines file is first read once
  without scoring (:func:`scan_jsonl`: every line checked, every field and its type over the whole
  file), so that every chunk has every column and each column one type, whatever ``chunk_size`` is;
- each scored chunk is written atomically as its own numbered part file in ``OUTPUT.parts/``,
  together with a manifest describing the run (input, model, options);
- ``--resume`` keeps the parts already written by a compatible earlier run and scores the rest;
- at the end the parts are joined, in order, into a temporary file that is renamed to OUTPUT, and
  the parts directory is removed. OUTPUT therefore either does not exist or is complete.

And so that it is fast by default (``workers=0``: one worker process per available core):

- the worker processes start first, before this process imports pandas, and load the model
  while it reads the first chunk (two start-ups on two cores at once); they need only the fast
  path's saved arrays, not the scikit-learn pipeline (:meth:`modclf.moderator.LoadedModel.load`
  with ``lazy=True``), and never import pandas;
- the main process reads chunks and sends each one's text column to the workers, split between
  them when it is large enough to be worth sharing; the workers send back only the result
  columns; the main process joins them to the chunk, writes the part and appends finished CSV /
  JSON Lines parts to the output as soon as their turn comes, so the join at the end has only
  the last part left to copy. Reading, scoring and writing overlap.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import sys
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from . import strictjson
from .errors import ScoringError
from .labels import LABELS
from .model import DEFAULT_MODEL_DIR

if TYPE_CHECKING:
    from concurrent.futures import Future

    import pandas as pd
    import pyarrow as pa

    from .moderator import Moderator

log = logging.getLogger(__name__)

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
#: Rows per chunk (and part file): small enough that the workers finish together (the last chunk is
#: the only one a core may wait for) and memory stays low, large enough that per-part costs vanish.
DEFAULT_CHUNK_SIZE = 10_000
#: A chunk with at least this many rows is split between the workers, so that even an input of
#: one chunk keeps every core busy (below it, the extra tasks cost more than they save).
SHARE_MIN_ROWS = 500
#: Recorded in a run's manifest: --resume keeps only parts whose chunks were read the same way.
READER_VERSION = 3
#: ``workers`` value meaning one worker process per core this process may run on (fewer for a small input).
AUTO_WORKERS = 0
#: With ``workers="auto"``, one worker per this many bytes of input, up to one per core: each
#: worker pays ~0.9 s of CPU to start, which on 2 cores a 1,000-comment file does not win back
#: (measured: 1.1 s wall with one worker, 1.2-1.6 s with two; 8,700 comments: 2.8 s and 2.1 s).
AUTO_BYTES_PER_WORKER = 512 * 1024
#: An explicit --workers above this many per core is refused (each worker holds a model).
MAX_WORKERS_PER_CORE = 4
#: A comment each worker scores as soon as it has loaded, so that every kernel, the language model
#: and the policy are loaded before the first chunk arrives.
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


def resolve_workers(workers: int | str, input_bytes: int | None = None) -> int:
    """``workers`` as a number of processes: ``"auto"`` or 0 -> :func:`available_cores`, or fewer
    for an input of ``input_bytes`` smaller than that many AUTO_BYTES_PER_WORKER."""
    if workers == "auto" or workers == AUTO_WORKERS:
        cores = available_cores()
        return cores if input_bytes is None else min(cores, 1 + input_bytes // AUTO_BYTES_PER_WORKER)
    if not isinstance(workers, int) or workers < 1:
        raise ScoringError("--chunk-size and --workers must be at least 1 (--workers may also be auto)")
    limit = MAX_WORKERS_PER_CORE * available_cores()
    if workers > limit:
        raise ScoringError(f"--workers {workers}: at most {limit} here ({MAX_WORKERS_PER_CORE} per available core; "
                           "each worker loads the model, and more workers than cores only compete for them)")
    return workers


# ---------------------------------------------------------------- reading


def _iter_csv(path: Path, chunk_size: int) -> Iterator[pd.DataFrame]:
    import warnings

    import pandas as pd

    _check_utf8(path)  # before any chunk: a bad byte near the end must not cost a scored file
    header, blank_lines_above = _check_header(path)
    try:
        # index_col=False: a first row longer than the header is an error below, not silently read
        # as an index that shifts every field; pandas only warns about it, so the warning is raised.
        # skip_blank_lines=False: in a one-column CSV an empty comment is an empty line, so a blank
        # line is a row (empty text, kept with its error) and output rows == data lines; blank lines
        # above the header are not rows and are skipped. A final line terminator ends the last row
        # and makes none.
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            reader = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[], chunksize=chunk_size,
                                 encoding="utf-8", encoding_errors="strict", index_col=False,
                                 skip_blank_lines=False, skiprows=blank_lines_above)
        while True:
            with warnings.catch_warnings():  # not held across the yield: the filter is process-wide
                warnings.simplefilter("error", pd.errors.ParserWarning)
                chunk = next(reader, None)
            if chunk is None:
                return
            if len(chunk.columns) == len(header):
                chunk.columns = header  # pandas names an empty header field "Unnamed: 0"; the output keeps ""
            yield chunk
    except UnicodeDecodeError as exc:
        raise ScoringError(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start} of a block); save it as UTF-8") from None
    except pd.errors.EmptyDataError:
        raise ScoringError(f"{path}: the file is empty (a CSV needs at least a header row)") from None
    except (pd.errors.ParserError, pd.errors.ParserWarning) as exc:
        # pandas counts records, not lines, in its message; the csv module finds the physical line
        where = _unclosed_quote(path) if "EOF inside string" in str(exc) else _long_row(path)
        raise ScoringError(f"{path}: malformed CSV: {where or exc}") from None


def _check_utf8(path: Path, block: int = 1 << 23) -> None:
    """Raise a ScoringError naming the line of the first byte that is not UTF-8 (a pass over the
    file, ~0.2 s for 50 MB, made while the workers load the model)."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    offset = 0
    with open(path, "rb") as fh:
        while True:
            data = fh.read(block)
            pending = len(decoder.getstate()[0])
            try:
                decoder.decode(data, final=not data)
            except UnicodeDecodeError as exc:
                at = offset - pending + exc.start
                fh.seek(0)
                line = fh.read(at).count(b"\n") + 1
                raise ScoringError(f"{path}: line {line}: not valid UTF-8 ({exc.reason} at byte {at}); "
                                   "save it as UTF-8") from None
            if not data:
                return
            offset += len(data)


def _csv_reader(fh: Any) -> Any:
    """The csv module's reader, for the checks pandas' reader cannot make (no field size cap: a
    comment can be long)."""
    import csv

    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    return csv.reader(fh)


def _check_header(path: Path) -> tuple[list[str], int]:
    """The header as written, and how many blank lines are above it. A column named twice would be
    renamed by pandas ("text.1"): the output's header would not be the input's, so it is an error."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = _csv_reader(fh)
        header: list[str] = []
        blank_above = 0  # lines, not line_num - 1: a quoted header field may span lines
        for header in reader:
            if header:
                break
            blank_above = reader.line_num
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise ScoringError(f"{path}: line {blank_above + 1}: column {name!r} appears more than once in the header")
        seen.add(name)
    return header, blank_above


def _long_row(path: Path) -> str | None:
    """Where a CSV first has a row with more fields than its header (only called on that error)."""
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
        reader = _csv_reader(fh)
        header: list[str] = []
        for header in reader:
            if header:  # blank lines above the header are skipped, as the reader skips them
                break
        for row in reader:
            if len(row) > len(header):
                return f"line {reader.line_num}: expected {len(header)} fields (the header's), saw {len(row)}"
    return None


def _unclosed_quote(path: Path) -> str | None:
    """Where the quoted field that runs to the end of the file opens (only called on pandas' "EOF
    inside string", whose "row" counts records, not lines). The unclosed field is the last row's
    last field and holds the rest of the file, so its line is the file's last line minus the line
    breaks inside it."""
    import csv

    with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
        reader = _csv_reader(fh)
        row: list[str] = []
        try:
            for row in reader:
                pass
        except csv.Error:  # pragma: no cover - the non-strict reader takes the rest of the file as the field
            return None
        if not row:
            return None
        field = row[-1]
        opens = reader.line_num - field.count("\n") + (1 if field.endswith("\n") else 0)
    return (f"line {opens}: a quoted field opens here and is never closed (a missing closing quote, "
            "so the rest of the file would be read as one comment)")


@dataclass
class JsonlScan:
    """What a first pass over a JSON Lines file finds: its fields in order of first appearance and,
    per field, the type of its values over the whole file (see :func:`_json_type`)."""

    rows: int = 0
    types: dict[str, Any] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        return list(self.types)


def _jsonl_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) of every line, each checked: UTF-8, one JSON object, no lone surrogate."""
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")  # a byte-order mark may lead the file
            except UnicodeDecodeError:
                raise ScoringError(f"{path}: line {lineno}: not valid UTF-8") from None
            if not line.strip():
                raise ScoringError(f"{path}: line {lineno}: empty line (every line must be one JSON object)")
            try:
                obj = strictjson.loads(line)
            except json.JSONDecodeError as exc:
                raise ScoringError(f"{path}: line {lineno}: invalid JSON: {exc.msg} (column {exc.colno})") from None
            except strictjson.DuplicateKey as exc:  # which value counts differs between readers
                raise ScoringError(f"{path}: line {lineno}: invalid JSON: the key {ascii(exc.key)} appears twice "
                                   "in one object") from None
            except RecursionError:
                raise ScoringError(f"{path}: line {lineno}: invalid JSON: nested too deeply") from None
            except ValueError as exc:  # NaN/Infinity, integers with too many digits
                raise ScoringError(f"{path}: line {lineno}: invalid JSON: {exc}") from None
            if not isinstance(obj, dict):
                raise ScoringError(f"{path}: line {lineno}: expected a JSON object, got {type(obj).__name__}")
            if "\\u" in line and _has_lone_surrogate(obj):  # only an escape can write one
                raise ScoringError(f"{path}: line {lineno}: a string holds an unpaired surrogate escape (\\ud800-\\udfff), "
                                   "which is not text and cannot be written as UTF-8; fix or remove it")
            yield lineno, obj


def scan_jsonl(path: str | Path) -> JsonlScan:
    """The first pass over a JSON Lines input, before anything is scored (the workers load the model
    meanwhile): every line is checked, so a bad line near the end costs no scoring, and the fields
    and their types are known for the whole file, so that every chunk has every column (a field
    first seen after the first chunk is a column of a CSV or Parquet output too, null above) and a
    field whose values mix types is written the same way whatever --chunk-size is."""
    path = Path(path)
    scan = JsonlScan()
    types = scan.types
    scalar = {str: "str", type(None): None, bool: "bool", float: "float"}  # the common case without a call
    for scan.rows, obj in _jsonl_records(path):
        for key, value in obj.items():
            cls = type(value)
            vt = scalar[cls] if cls in scalar else _json_type(value)
            if key not in types:
                types[key] = vt
            elif vt is not None and types[key] != vt:
                types[key] = _unify(types[key], vt)
    return scan


#: The type of a field whose values Parquet cannot hold in one column (mixed types, such as numbers
#: and strings or true and 1; an integer beyond 64 bits): it is written as text.
MIXED = "mixed"
_INT53 = 2**53


def _json_type(value: Any) -> Any:
    """A JSON value's type: None (null), "bool", "int" (exact as a double), "int64", "float", "str",
    ("list", element type), ("struct", ((name, type), ...)) or MIXED."""
    cls = type(value)
    if cls is str:
        return "str"
    if value is None:
        return None
    if cls is bool:
        return "bool"
    if cls is int:
        return "int" if -_INT53 <= value <= _INT53 else "int64" if -2**63 <= value < 2**63 else MIXED
    if cls is float:
        return "float"
    if cls is list:
        elem = None
        for item in value:
            elem = _unify(elem, _json_type(item))
            if elem == MIXED:
                return MIXED
        return ("list", elem)
    if cls is dict:
        fields = tuple((k, _json_type(v)) for k, v in value.items())
        return MIXED if any(t == MIXED for _, t in fields) else ("struct", fields)
    return MIXED  # pragma: no cover - json.loads makes nothing else


def _unify(a: Any, b: Any) -> Any:
    """The type of a column holding values of types ``a`` and ``b`` (commutative and associative,
    so the result does not depend on the order of the rows or on how they are cut into chunks)."""
    if a == b or b is None:
        return a
    if a is None:
        return b
    if a == MIXED or b == MIXED:
        return MIXED
    pair = {a, b} if isinstance(a, str) and isinstance(b, str) else None
    if pair == {"int", "int64"}:
        return "int64"
    if pair == {"int", "float"}:  # a double holds these integers exactly (Arrow refuses larger ones)
        return "float"
    if pair is not None or type(a) is not type(b) or a[0] != b[0]:
        return MIXED
    if a[0] == "list":
        elem = _unify(a[1], b[1])
        return MIXED if elem == MIXED else ("list", elem)
    merged = dict(a[1])
    for name, t in b[1]:
        merged[name] = _unify(merged[name], t) if name in merged else t
        if merged[name] == MIXED:
            return MIXED
    return ("struct", tuple(merged.items()))


def _arrow_type(t: Any) -> pa.DataType | None:
    """The Arrow type of a field of type ``t`` in Parquet output; None: written as text."""
    import pyarrow as pa

    if t is None:
        return pa.null()
    if isinstance(t, str):
        return {"bool": pa.bool_(), "int": pa.int64(), "int64": pa.int64(), "float": pa.float64(),
                "str": pa.string()}.get(t)
    if t[0] == "list":
        elem = _arrow_type(t[1])
        return None if elem is None else pa.list_(elem)
    fields = [(name, _arrow_type(ft)) for name, ft in t[1]]
    if not fields or any(ft is None for _, ft in fields):  # Parquet cannot write a struct without fields
        return None
    return pa.struct(fields)


def _iter_jsonl(path: Path, chunk_size: int, columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
    """Chunks with ``columns`` (default: a first pass finds them), a record's missing keys null."""
    if columns is None:
        columns = scan_jsonl(path).columns
    known = set(columns)
    records: list[dict[str, Any]] = []
    for lineno, obj in _jsonl_records(path):
        if not known.issuperset(obj):
            raise ScoringError(f"{path}: line {lineno}: the file changed while it was being read (a field the first "
                               "pass did not see); score it again once it is complete")
        records.append(obj)
        if len(records) >= chunk_size:
            yield _records_frame(records, columns)
            records = []
    if records:
        yield _records_frame(records, columns)


def _has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(map(_has_lone_surrogate, value))
    return False


def _records_frame(records: list[dict[str, Any]], columns: list[str] | None = None) -> pd.DataFrame:
    import pandas as pd

    # object dtype keeps values as written (an int next to a null stays an int, not 42.0), and a key
    # a record lacks is None (null), not NaN (which a text column would write as the text "NaN")
    keys = dict.fromkeys(k for record in records for k in record) if columns is None else columns
    return pd.DataFrame({k: [record.get(k) for record in records] for k in keys}, index=pd.RangeIndex(len(records)),
                        dtype=object)


def _iter_parquet(path: Path, chunk_size: int) -> Iterator[pd.DataFrame]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ScoringError(f"{path}: not a readable Parquet file: {exc}") from None
    names = pf.schema_arrow.names
    twice = [c for c in dict.fromkeys(names) if names.count(c) > 1]
    if twice:  # which of the two is the text would be a guess
        raise ScoringError(f"{path}: column {twice[0]!r} appears more than once")
    batches = pf.iter_batches(batch_size=chunk_size)
    first_row = 1
    while True:
        try:
            batch = next(batches)
            batch.validate(full=True)  # strings are checked for UTF-8 here, not when first used
            frame = parquet_frame(batch, path)
        except StopIteration:
            return
        except pa.ArrowException as exc:  # a string column that is not UTF-8, a page that does not decode
            raise ScoringError(f"{path}: rows from {first_row}: cannot be read: {str(exc).splitlines()[0][:200]} "
                               "(a string column must hold UTF-8 text)") from None
        first_row += len(frame)
        yield frame


def parquet_frame(data: pa.RecordBatch | pa.Table, path: str | Path) -> pd.DataFrame:
    """A Parquet batch as a DataFrame with every column of the file (the local and the Dask reader).

    A pandas index stored in the file (``to_parquet``'s default for any index but a plain
    RangeIndex) is data, such as a comment id: it becomes an ordinary column, first, named as in
    the file (``__index_level_0__`` when it had no name), instead of an index that writing drops.
    A RangeIndex kept as metadata only is no column of the file and stays out."""
    stored = [c for c in (data.schema.pandas_metadata or {}).get("index_columns", []) if isinstance(c, str)]
    df = data.to_pandas(integer_object_nulls=True)  # an int64 id with a null stays exact, not a float
    if not stored:
        return df.reset_index(drop=True)
    clash = [c for c in stored if c in df.columns]
    if clash:
        raise ScoringError(f"{path}: the stored index {clash[0]!r} has the name of a column; rename one of them")
    df = df.reset_index()
    df.columns = [*stored, *df.columns[len(stored):]]
    return df


def iter_chunks(path: str | Path, fmt: str, chunk_size: int, columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
    """Yield the input as DataFrames of at most ``chunk_size`` rows, in file order. A JSON Lines
    file's chunks all have every field of the file (``columns``, from :func:`scan_jsonl`: found by a
    first pass when not given)."""
    path = Path(path)
    if not path.is_file():
        raise ScoringError(f"{path}: input file not found")
    if fmt == "jsonl":
        return _iter_jsonl(path, chunk_size, columns)
    readers = {"csv": _iter_csv, "parquet": _iter_parquet}
    return readers[fmt](path, chunk_size)


# ---------------------------------------------------------------- writing


def _write_part(df: pd.DataFrame, path: Path, fmt: str, types: dict[str, Any] | None = None) -> None:
    """Write one part atomically (modclf.atomic). ``types``: the Arrow type of some columns, the
    same in every part (None: written as text), from :func:`scan_jsonl` for a JSON Lines input."""
    from .atomic import atomic_path

    with atomic_path(path) as tmp:
        if fmt == "csv":
            _write_csv_rows(df, tmp, [c for c, t in (types or {}).items() if t is None])
        elif fmt == "jsonl":
            _write_jsonl_rows(df, tmp)
        else:
            import pyarrow.parquet as pq

            pq.write_table(_to_arrow(df, types), tmp)


def _write_jsonl_rows(df: pd.DataFrame, path: Path) -> None:
    """One JSON object per row, values as read: numbers keep every digit (``to_json`` rounds to 10
    significant digits) and "/" stays "/"; a missing value (NaN, None) is null."""
    import math

    with open(path, "w", encoding="utf-8") as fh:
        for record in df.to_dict("records"):
            row = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}
            fh.write(json.dumps(row, ensure_ascii=False, default=_json_value) + "\n")


def _json_value(value: Any) -> Any:
    """JSON form of the values pandas and Parquet produce that ``json`` does not know."""
    if value is None or type(value).__name__ in ("NAType", "NaTType"):
        return None
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (bytes, bytearray)):
        import base64

        return base64.b64encode(value).decode("ascii")
    if hasattr(value, "isoformat"):  # datetime, date, pandas Timestamp
        return value.isoformat()
    return str(value)  # Decimal and anything else: its exact text


def _write_csv_rows(df: pd.DataFrame, path: Path, as_text: list[str] | None = None) -> None:
    """CSV rows without a header, by Arrow's C++ writer (~10x pandas.to_csv, which formats every
    float in Python); floats keep their shortest round-trip form, text values are quoted.
    Columns Arrow cannot write as CSV (nested JSON values) fall back to pandas for that part.
    ``as_text``: columns written as text in every part (a JSON field mixing types: true stays true,
    not the 1.0 Arrow would make of it next to a number in the same part).
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from .csvsafe import safe_frame

    df = safe_frame(_flatten_cells(df))  # comments are attacker-written: no cell may start a spreadsheet formula
    try:
        pacsv.write_csv(_to_arrow(df, dict.fromkeys(as_text or ())), path, pacsv.WriteOptions(include_header=False))
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        df.to_csv(path, index=False, header=False, lineterminator="\n")


def _to_arrow(df: pd.DataFrame, types: dict[str, Any] | None = None) -> pa.Table:
    """Arrow table of a chunk. A column Arrow cannot take as it is (JSON mixing types, which
    Parquet does not allow; an integer beyond 64 bits) becomes text: JSON for non-strings.
    ``types``: columns given their type (the same in every chunk) instead of inferring it from
    this chunk's values; None: text."""
    import pyarrow as pa

    if types:
        given = [c for c in df.columns if c in types]
        rest = _to_arrow(df[[c for c in df.columns if c not in types]]) if len(given) < len(df.columns) else None
        arrays = []
        for c in df.columns:
            if c not in types:
                arrays.append(rest.column(c))  # type: ignore[union-attr]
            elif types[c] is None:
                # not Series.map, which makes None NaN; NaN (a null _flatten_cells mapped) is null
                arrays.append(pa.array([None if v != v else _as_text(v) for v in df[c].tolist()], pa.string()))
            else:
                arrays.append(pa.array(df[c].tolist(), types[c]))
        return pa.Table.from_arrays(arrays, names=list(map(str, df.columns)))
    try:
        return pa.Table.from_pandas(df, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
        fixed = df.copy()
        for col in fixed.columns[fixed.dtypes == object]:
            try:
                pa.array(fixed[col], from_pandas=True)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
                fixed[col] = fixed[col].map(_as_text)
        return pa.Table.from_pandas(fixed, preserve_index=False)


def _as_text(value: Any) -> Any:
    """A cell as text for a text-only writer: strings and nulls as they are, the rest as JSON."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return _json_value(value)  # base64
    return json.dumps(value, ensure_ascii=False, default=_json_value)


def _flatten_cells(df: pd.DataFrame) -> pd.DataFrame:
    """Lists, arrays and mappings (Parquet list and struct columns) as JSON text, bytes as base64: a
    CSV cell holds text, and pandas would print a long array with "..." in the middle."""
    nested = (list, tuple, dict, np.ndarray, bytes, bytearray)
    cols = [c for c in df.columns[df.dtypes == object] if df[c].map(lambda v: isinstance(v, nested)).any()]
    if not cols:
        return df
    df = df.copy()
    for col in cols:
        df[col] = df[col].map(_as_text)
    return df


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

    # A JSON Lines input's columns have one type in every part (scan_jsonl); the result columns
    # and the columns of a CSV or Parquet input are the same in every part anyway. The permissive
    # union is kept for what is left (a column all null in one part).
    schemas = [pq.read_schema(p) for p in parts]
    try:
        schema = pa.unify_schemas(schemas, promote_options="permissive") if schemas else pa.schema(
            [(c, pa.string()) for c in columns])
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:  # pragma: no cover - the scan gives every part one schema
        raise ScoringError(f"{tmp}: a column changes type between parts, cannot write Parquet ({exc}); "
                           "write .jsonl or .csv output instead") from None
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


def load_moderator(model_dir: str | Path, policy: str | Path | None = None, fast: bool = True) -> "Moderator":
    """The one loader (sha256 check, fast path self-checked against scikit-learn) plus the policy;
    ``fast=False`` predicts with the plain scikit-learn pipeline (identical numbers, slower).

    With the fast path the scikit-learn pipeline is not unpickled unless the model directory lacks
    the fast path's saved arrays (scoring never needs it otherwise)."""
    from .moderator import LoadedModel, Moderator
    from .policy import default_policy_path, load_policy

    return Moderator(LoadedModel.load(model_dir, fast=fast, lazy=True), load_policy(policy or default_policy_path()))


# ---------------------------------------------------------------- worker processes

#: In a worker process: its moderator, or the error that kept it from loading.
_WORKER: "Moderator | BaseException | None" = None


def _init_worker(model_dir: str, policy: str | None, fast: bool, parent: int | None) -> None:
    """A worker's start-up: load and warm up the moderator (pandas is never imported here).

    A failure is kept and raised by every task, so the main process reports the real error (a
    ModelError naming the file) rather than a broken pool."""
    global _WORKER
    if parent is not None:
        _tie_to_parent(parent)
    try:
        moderator = load_moderator(model_dir, policy, fast)
        _warm_up(moderator)
        _WORKER = moderator
    except BaseException as exc:  # noqa: BLE001 - re-raised in the main process by the first task
        _WORKER = exc


def _tie_to_parent(parent: int) -> None:
    """A forked worker ends with its parent and leaves Ctrl-C to it.

    A worker holds copies of both ends of the pool's pipes, so when the parent is killed (kill -9,
    out of memory) nothing would ever wake it: it asks the kernel for SIGTERM when the parent
    dies. Ctrl-C reaches the whole process group; the parent alone handles it (it stops dispatching,
    waits for the chunks under way and exits), so workers do not print tracebacks of their own.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for sig in (signal.SIGTERM, signal.SIGHUP):  # the parent's clean-stop handlers are not for workers
        signal.signal(sig, signal.SIG_DFL)
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
    model) is loaded before the first chunk arrives."""
    from .predict import score_values

    score_values(moderator, [_WARM_UP_TEXT, ""])


def _worker_moderator() -> "Moderator":
    if isinstance(_WORKER, BaseException):
        raise _WORKER
    if _WORKER is None:  # pragma: no cover - the initializer always sets it
        raise RuntimeError("scoring worker used before its start-up")
    return _WORKER


def _worker_identity() -> dict[str, str]:
    """What the run's manifest records of the model and policy the workers loaded."""
    moderator = _worker_moderator()
    return {"model_sha256": moderator.model.meta["model_sha256"], "policy_sha256": moderator.policy.sha256}


def _score_task(values: list[Any]) -> dict[str, np.ndarray]:
    """Score one slice of a chunk's text column: the result columns only (small to send back)."""
    from .predict import score_values

    return score_values(_worker_moderator(), values)


class _Workers:
    """Processes that load the model and score texts; the main process reads, dispatches and writes.

    They start (forked, where the platform allows) before this process imports pandas, so the
    model loads in them while the input is being read: on two cores the two start-ups overlap
    instead of taking turns under one GIL. They never import pandas; a task is a list of texts and
    its answer the result columns as arrays.
    """

    def __init__(self, n: int, model_dir: str | Path, policy: str | Path | None, fast: bool):
        from concurrent.futures import ProcessPoolExecutor

        fork = "fork" in multiprocessing.get_all_start_methods() and sys.platform.startswith("linux")
        self.n, self.fast = n, fast
        #: where the run keeps its finished parts (named in the error when a worker dies)
        self.parts_dir: Path | None = None
        self._pool = ProcessPoolExecutor(
            n, mp_context=multiprocessing.get_context("fork" if fork else "spawn"), initializer=_init_worker,
            initargs=(str(model_dir), str(policy) if policy else None, fast, os.getpid() if fork else None))
        self._identity = self._pool.submit(_worker_identity)  # the first task starts the processes now

    def identity(self) -> dict[str, str]:
        """Model and policy checksums; raises the workers' load error (ModelError, PolicyError)."""
        return self.result(self._identity)

    def submit(self, values: list[Any]) -> "Future[dict[str, np.ndarray]]":
        from concurrent.futures.process import BrokenProcessPool

        try:
            return self._pool.submit(_score_task, values)
        except BrokenProcessPool:  # a worker died since the last answer
            raise self._broken() from None

    def result(self, future: "Future[Any]") -> Any:
        from concurrent.futures.process import BrokenProcessPool

        try:
            return future.result()
        except BrokenProcessPool:
            raise self._broken() from None

    def _broken(self) -> ScoringError:
        """A worker that died (killed, out of memory) is a ScoringError saying what is kept, not a
        traceback of the pool's internals."""
        kept = (f"; the chunks already written are kept in {self.parts_dir}: run the same command with --resume "
                "to score the rest") if self.parts_dir is not None else ""
        return ScoringError(f"a scoring worker process ended abruptly (killed, or out of memory?){kept}")

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _write_scored_chunk(chunk: pd.DataFrame, results: list[dict[str, np.ndarray]], part: Path, fmt: str,
                        prefix: str, types: dict[str, Any] | None = None) -> dict[str, Any]:
    """Join a chunk with its scored slices, write it as part file ``part``; the part's statistics."""
    import pandas as pd

    from .predict import RESULT_COLUMNS, result_frame

    columns = {c: np.concatenate([r[c] for r in results]) for c in RESULT_COLUMNS}
    out = pd.concat([chunk, result_frame(columns, chunk.index, prefix)], axis=1)
    _write_part(out, part, fmt, types)
    return _chunk_stats(out, prefix)


def _chunk_stats(out: pd.DataFrame, prefix: str) -> dict[str, Any]:
    err = out[prefix + "error"]
    return {
        "rows": len(out),
        "scored": int((err == "").sum()),
        "errors": Counter(err[err != ""].tolist()),
        "labels": Counter(out[prefix + "label"][err == ""].tolist()),
        "actions": Counter(out[prefix + "action"].tolist()),
    }


def _slices(n: int, workers: int) -> list[tuple[int, int]]:
    """Bounds of the slices one chunk of ``n`` rows is scored in: one per worker when the chunk is
    big enough to be worth sharing (so that even an input of one chunk keeps every core busy)."""
    shares = workers if n >= SHARE_MIN_ROWS else 1
    bounds = [n * i // shares for i in range(shares + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def _check_columns(df: pd.DataFrame, input_path: Path, text_column: str, prefix: str,
                   records: int | None = None) -> list[str]:
    """The output's columns; ``records``: a JSON Lines input's number of records (all were read)."""
    from .predict import RESULT_COLUMNS

    if text_column not in df.columns:
        names = list(map(str, df.columns))
        shown = ", ".join(names[:30]) + (f", ... ({len(names)} in all)" if len(names) > 30 else "")
        where = "" if records is None else f" in any of its {records} record{'s' if records != 1 else ''}"
        raise ScoringError(
            f"{input_path}: no column {text_column!r}{where} ({'fields' if records is not None else 'columns'}: "
            f"{shown or 'none'}); choose the text column with --text-column"
        )
    clash = [prefix + c for c in RESULT_COLUMNS if prefix + c in df.columns]
    if clash:
        raise ScoringError(
            f"{input_path}: the input already has column(s) {', '.join(clash)}, which scoring adds; "
            "use --prefix (e.g. --prefix pred_) to name the output columns differently"
        )
    return [*map(str, df.columns), *(prefix + c for c in RESULT_COLUMNS)]


def _progress_bar(name: str, progress: bool | None) -> Any:
    """A tqdm bar when progress is wanted (default: stderr is a terminal); else a no-op stand-in."""
    if progress is False or (progress is None and not sys.stderr.isatty()):
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(desc=f"scoring {name}", unit="rows", leave=False, file=sys.stderr)


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

    ``workers``: processes scoring in parallel; ``"auto"`` or 0 for one per available core, or
    fewer for a small input (what ``modclf score`` does by default). Each chunk is split between
    the workers when it has at least SHARE_MIN_ROWS rows.
    ``policy`` is the moderation policy file that decides the ``action`` column (default:
    ``$MODCLF_POLICY`` or the shipped policy).
    """
    start = time.perf_counter()
    # a symlinked output is written (and locked) at its target, not replaced by a regular file
    input_path, output_path = Path(input_path), Path(os.path.realpath(output_path))
    in_fmt, out_fmt = detect_format(input_path, input_format), detect_format(output_path, output_format)
    if chunk_size < 1:
        raise ScoringError("--chunk-size and --workers must be at least 1")
    if input_path.resolve() == output_path.resolve():
        raise ScoringError(f"{output_path}: the output would overwrite the input")
    if not input_path.is_file():
        raise ScoringError(f"{input_path}: input file not found")
    workers = resolve_workers(workers, input_path.stat().st_size)
    _check_output(output_path)
    with _output_lock(output_path):
        pool = _Workers(workers, model_dir, policy, fast)  # the model loads there while pandas is imported here
        try:
            return _run(pool, start, input_path, output_path, in_fmt, out_fmt, text_column, prefix, chunk_size,
                        resume, progress)
        except OSError as exc:  # disk full, permissions, a path component that is a file
            raise ScoringError(f"{exc.filename or output_path}: {exc.strerror or exc}") from None
        finally:
            pool.close()


def _check_output(output_path: Path) -> None:
    """Refuse an output that cannot be written before anything is scored."""
    if output_path.is_dir():
        raise ScoringError(f"{output_path}: is a directory; give the output file's name")
    for above in (output_path.parent, *output_path.parent.parents):
        if above.exists() and not above.is_dir():
            raise ScoringError(f"{output_path}: {above} is a file, not a directory")
    try:
        output_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ScoringError(f"{output_path}: cannot create its directory ({exc.strerror or exc})") from None
    if not os.access(output_path.parent, os.W_OK | os.X_OK):
        raise ScoringError(f"{output_path}: the directory {output_path.parent} is not writable")


@contextmanager
def _output_lock(output_path: Path) -> Iterator[None]:
    """One run per output at a time: a second run on the same output would delete the first one's
    parts. A POSIX record lock (lockf): the kernel drops it when this process dies, even while its
    forked workers, which do not inherit it, are still exiting; so a killed run leaves no stale
    lock. Temporary files a killed run left are removed once the lock is held."""
    import fcntl

    from .atomic import temp_pattern

    lock_path = output_path.with_name(f".{output_path.name}.lock")
    while True:
        try:
            fh = open(lock_path, "a+b")
        except OSError as exc:
            raise ScoringError(f"{output_path}: cannot create the lock file {lock_path} ({exc.strerror or exc})") from None
        try:
            fcntl.lockf(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            raise ScoringError(f"{output_path}: another scoring run is writing this output; wait for it or choose "
                               "another output") from None
        try:  # the run that held it may have removed the file between our open and our lock
            if os.stat(lock_path).st_ino == os.fstat(fh.fileno()).st_ino:
                break
        except FileNotFoundError:
            pass
        fh.close()
    try:
        for leftover in output_path.parent.glob(temp_pattern(output_path)):
            leftover.unlink(missing_ok=True)
        parts_dir = output_path.with_name(output_path.name + ".parts")
        if parts_dir.is_dir():
            for leftover in parts_dir.glob(".*.tmp"):
                leftover.unlink(missing_ok=True)
        yield
    finally:
        lock_path.unlink(missing_ok=True)  # while held: a run that opened it meanwhile sees the inode change
        fh.close()


def _run(pool: _Workers, start: float, input_path: Path, output_path: Path, in_fmt: str, out_fmt: str,
         text_column: str, prefix: str, chunk_size: int, resume: bool, progress: bool | None) -> ScoreSummary:
    scan = scan_jsonl(input_path) if in_fmt == "jsonl" else None  # while the workers load the model
    chunks = iter_chunks(input_path, in_fmt, chunk_size, scan.columns if scan else None)
    first = next(chunks, None)
    if first is None:
        raise ScoringError(f"{input_path}: the input has no rows") if in_fmt != "csv" else ScoringError(
            f"{input_path}: the input has a header but no rows")
    columns = _check_columns(first, input_path, text_column, prefix, scan.rows if scan else None)
    # a JSON field's type in Parquet (and whether it is text in CSV): one for the whole file
    types = None
    if scan is not None and out_fmt != "jsonl":
        types = {k: _arrow_type(t) for k, t in scan.types.items()}
        if out_fmt == "csv":
            types = {k: t for k, t in types.items() if t is None}
    input_columns = list(first.columns)
    identity = pool.identity()  # ModelError / PolicyError of the workers surface here

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
        "fast_path": pool.fast,  # --slow gives the same labels but not the same last digits
        # how the input is read into rows and columns (2: CSV blank lines are rows, a Parquet file's
        # stored index is a column; 3: every JSON Lines chunk has every field of the file, each
        # with one type for the whole file); parts of a run that read it otherwise are not resumed
        "reader": READER_VERSION,
        **identity,
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
    pool.parts_dir = parts_dir
    done_stats = _read_part_stats(parts_dir) if resume else {}
    _write_manifest(parts_dir, {"run": manifest})

    summary = ScoreSummary(workers=pool.n)
    assembler = _Assembler(output_path, out_fmt)
    bar: Any = _NoBar()
    # chunk index -> (chunk, the futures of its slices, its part file), oldest first
    in_flight: dict[int, tuple[pd.DataFrame, list[Any], Path]] = {}

    def finished(idx: int, part: Path, stats: dict[str, Any]) -> None:
        _record_part_stats(parts_dir, idx, stats)
        summary.add(stats)
        bar.update(stats["rows"])
        assembler.add(idx, part)

    def settle(block: bool) -> None:
        """Write the chunks whose slices are all scored; with ``block``, wait for the oldest."""
        from concurrent.futures import wait

        if block and in_flight:
            wait(next(iter(in_flight.values()))[1])
        for idx in [i for i, (_, futures, _) in in_flight.items() if all(f.done() for f in futures)]:
            chunk, futures, part = in_flight.pop(idx)
            results = [pool.result(f) for f in futures]
            finished(idx, part, _write_scored_chunk(chunk, results, part, out_fmt, prefix, types))

    bad_input = False  # an error in the input itself: it must change, so no part can be resumed

    def all_chunks() -> Iterator[pd.DataFrame]:
        """The input's chunks, later ones given the first one's columns."""
        nonlocal bad_input
        yield first
        try:
            for idx, chunk in enumerate(chunks, start=1):
                yield _conform(chunk, input_columns, input_path, out_fmt, idx * chunk_size)
        except ScoringError:
            bad_input = True
            raise

    n_parts = 0
    try:
        assembler.start(columns)
        bar = _progress_bar(input_path.name, progress)
        for idx, chunk in enumerate(all_chunks()):
            part = parts_dir / f"part-{idx:07d}.{out_fmt}"
            n_parts = idx + 1
            if str(idx) in done_stats and part.exists():
                summary.add(_decode_stats(done_stats[str(idx)]))
                summary.chunks_resumed += 1
                bar.update(len(chunk))
                assembler.add(idx, part)
                continue
            values = chunk[text_column].tolist()
            in_flight[idx] = (chunk, [pool.submit(values[a:b]) for a, b in _slices(len(values), pool.n)], part)
            while len(in_flight) > 2 * pool.n:  # bound memory: at most 2 chunks in flight per worker
                settle(block=True)
            settle(block=False)
        while in_flight:
            settle(block=True)
        assembler.finish(columns, n_parts)
    except BaseException as exc:
        assembler.abort(exc)
        if bad_input:  # "writing nothing": the parts of an input that must be fixed are no use
            shutil.rmtree(parts_dir, ignore_errors=True)
        raise
    finally:
        bar.close()
    shutil.rmtree(parts_dir, ignore_errors=True)
    summary.seconds = time.perf_counter() - start
    return summary


def _conform(chunk: pd.DataFrame, input_columns: list[str], input_path: Path, out_fmt: str, first_row: int) -> pd.DataFrame:
    """Give a later chunk the first chunk's columns (a JSON Lines chunk has them all already: the
    first pass found every field; a field it did not see is an error of _iter_jsonl)."""
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
