"""Distributed batch scoring on a Dask cluster (``score.py --engine dask``).

The input is read as a partitioned Dask DataFrame (JSON Lines split by bytes, Parquet by file or
row group, CSV one partition per file), every partition is scored by the same code as local scoring, and the output is a
partitioned dataset written to a temporary directory that is renamed into place at the end.

The model travels with the tasks: the client reads and verifies ``model.joblib`` once and
broadcasts its bytes to the workers, so workers need no shared filesystem with the client. Each
worker process unpickles the model once (cached by checksum).
"""

from __future__ import annotations

import csv
import glob
import hashlib
import io
import logging
import os
import shutil
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from .csvsafe import safe_frame
from .errors import ModelError
from .labels import LABELS
from .model import DEFAULT_MODEL_DIR, MODEL_FILE, read_meta
from .moderator import LoadedModel, Moderator
from .policy import Policy, default_policy_path, load_policy
from .predict import RESULT_COLUMNS, score_frame
from .scoring import FORMATS, ScoreSummary, ScoringError

log = logging.getLogger(__name__)

_MODERATORS: dict[str, Any] = {}


def _moderator(model_bytes: bytes, sha: str, version: str, policy: Policy, fast: bool) -> Moderator:
    """The worker's Moderator for this model (cached per model and policy): built with the same
    guarantees as every other loader (the bytes' sha256 checked again here, the fast path
    self-checked against scikit-learn)."""
    key = f"{sha}:{policy.sha256}:{fast}"
    if key not in _MODERATORS:
        import hashlib

        import joblib

        from .model import ModelArtifact

        if hashlib.sha256(model_bytes).hexdigest() != sha:
            raise ModelError("model bytes received by the Dask worker do not match model.json's sha256")
        artifact = ModelArtifact(pipeline=joblib.load(io.BytesIO(model_bytes)), meta={"model_version": version})
        _MODERATORS[key] = Moderator(LoadedModel.from_artifact(artifact, Path("<dask>"), fast=fast), policy)
    return _MODERATORS[key]


def _score_partition(df: pd.DataFrame, model_bytes: bytes, sha: str, version: str, policy: Policy, fast: bool,
                     text_column: str, prefix: str) -> pd.DataFrame:
    if text_column not in df.columns:  # JSON partitions may lack the key altogether
        df = df.assign(**{text_column: None})
    out = score_frame(_moderator(model_bytes, sha, version, policy, fast), df, text_column, prefix)
    # typed string columns (not object) so Dask can infer the Parquet schema from its metadata
    return out.astype({prefix + c: "str" for c in ("label", "action", "language", "policy_version", "error")})


def _input_format(path: str) -> str:
    candidates = sorted(glob.glob(os.path.join(path, "*"))) if os.path.isdir(path) else sorted(glob.glob(path))
    if not candidates:
        raise ScoringError(f"{path}: no input files found")
    suffixes = {Path(c).suffix.lower() for c in candidates if not Path(c).name.startswith((".", "_"))}
    formats = {FORMATS.get(s) for s in suffixes}
    if len(formats) != 1 or None in formats:
        raise ScoringError(f"{path}: input files must all be .csv, .jsonl or .parquet (found {', '.join(sorted(suffixes))})")
    return formats.pop()


def _output_format(path: str) -> str:
    suffix = Path(path.rstrip("/")).suffix.lower()
    return FORMATS.get(suffix, "parquet") if suffix else "parquet"


def score_dask(
    input_path: str,
    output_path: str,
    model_dir: str | Path = DEFAULT_MODEL_DIR,
    text_column: str = "text",
    prefix: str = "",
    scheduler: str | None = None,
    partition_size: str = "64MB",
    fast: bool = True,
    n_workers: int | None = None,
    policy: str | Path | None = None,
) -> ScoreSummary:
    """Score a (possibly multi-file) input on Dask into the partitioned dataset ``output_path``.

    The model is read and verified here (the file named by model.json, its sha256), sent to the
    workers once, verified again there and self-checked like every other load; ``policy`` (default:
    ``$MODCLF_POLICY`` or the shipped one) decides the ``action`` column.
    """
    import dask.dataframe as dd
    from dask.distributed import Client, LocalCluster

    if not log.isEnabledFor(logging.DEBUG):  # the cluster's start/stop chatter is not the user's business
        logging.getLogger("distributed").setLevel(logging.WARNING)

    in_fmt, out_fmt = _input_format(input_path), _output_format(output_path)
    meta_json = read_meta(model_dir)
    model_file = Path(model_dir) / meta_json.get("model_file", MODEL_FILE)
    try:
        model_bytes = model_file.read_bytes()
    except OSError as exc:
        raise ModelError(f"{model_file}: cannot read the model file: {exc.strerror or exc}") from None
    if hashlib.sha256(model_bytes).hexdigest() != meta_json["model_sha256"]:
        raise ModelError(f"{model_file}: sha256 does not match model.json; the model file was changed or corrupted")
    version = str(meta_json.get("model_version", meta_json["model_sha256"][:12]))
    policy_obj = load_policy(policy or default_policy_path())
    sha = meta_json["model_sha256"]
    source = os.path.join(input_path, f"*{'.' + in_fmt if in_fmt != 'jsonl' else '.jsonl'}") if os.path.isdir(input_path) else input_path

    start = time.perf_counter()
    cluster = None
    if scheduler:
        try:
            client = Client(scheduler)  # waits distributed.comm.timeouts.connect (30 s) for it
        except (OSError, TimeoutError) as exc:  # refused, unreachable, timed out, no such host
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ScoringError(f"cannot reach the Dask scheduler at {scheduler}: {detail}") from None
        except ValueError as exc:  # a malformed address ("unknown address scheme")
            raise ScoringError(f"--scheduler {scheduler!r}: not a Dask scheduler address ({exc}); "
                               "e.g. tcp://10.0.0.5:8786") from None
    else:
        cluster = LocalCluster(n_workers=n_workers or os.cpu_count() or 1, threads_per_worker=1,
                               host="127.0.0.1", dashboard_address=None, processes=True)
        client = Client(cluster)
    try:
        if in_fmt == "csv":
            # CSV is not split by bytes: a quoted comment may contain newlines, and a split inside one
            # breaks parsing. One partition per file; use several files, JSON Lines or Parquet to scale.
            # A blank line is a row (an empty comment in a one-column CSV), as in local scoring.
            ddf = dd.read_csv(source, dtype=str, keep_default_na=False, na_values=[], blocksize=None,
                              skip_blank_lines=False)
        elif in_fmt == "jsonl":
            ddf = dd.read_json(source, lines=True, orient="records", blocksize=partition_size, dtype=False)
        else:
            ddf = _read_parquet(source)
        if text_column not in ddf.columns:
            raise ScoringError(f"{input_path}: no column {text_column!r} (columns: {', '.join(map(str, ddf.columns))})")
        clash = [prefix + c for c in RESULT_COLUMNS if prefix + c in ddf.columns]
        if clash:
            raise ScoringError(f"{input_path}: the input already has column(s) {', '.join(clash)}; use --prefix")
        [model_future] = client.scatter([model_bytes], broadcast=True)
        # the output schema, from scoring two sample rows of the input's schema here on the client
        sample = ddf._meta_nonempty.copy()
        sample[text_column] = ["sample", "text"][: len(sample)]
        meta = _score_partition(sample, model_bytes, sha, version, policy_obj, fast, text_column, prefix).iloc[:0]
        scored = ddf.map_partitions(_score_partition, model_future, sha, version, policy_obj, fast, text_column, prefix,
                                    meta=meta)

        out = Path(output_path.rstrip("/"))
        tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
        try:
            if out_fmt == "parquet":
                scored.to_parquet(str(tmp), write_index=False, name_function=lambda i: f"part-{i:06d}.parquet")
            elif out_fmt == "csv":
                tmp.mkdir(parents=True)
                # every text cell quoted, as the local engine writes them: pandas' minimal quoting leaves
                # a bare carriage return unquoted, and readers split the row there (a cell after it
                # would start a line, past the formula guard)
                scored.map_partitions(safe_frame, meta=safe_frame(meta)).to_csv(
                    str(tmp / "part-*.csv"), index=False, name_function=_part_name, quoting=csv.QUOTE_NONNUMERIC)
            else:
                tmp.mkdir(parents=True)
                scored.to_json(str(tmp / "part-*.jsonl"), orient="records", lines=True, force_ascii=False,
                              name_function=_part_name)
            if out.exists():
                shutil.rmtree(out) if out.is_dir() else out.unlink()
            os.replace(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        summary = _summarize(out, out_fmt, prefix)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    summary.seconds = time.perf_counter() - start
    return summary


def _parquet_pieces(source: str) -> list[tuple[str, int | None]]:
    """(file, row group) of every row group of the input files, in order; (file, None) for a file
    without row groups (an empty table still gives the schema)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pieces: list[tuple[str, int | None]] = []
    for name in sorted(glob.glob(source)):
        if Path(name).name.startswith((".", "_")):
            continue
        try:
            groups = pq.ParquetFile(name).num_row_groups
        except (pa.ArrowInvalid, OSError) as exc:
            raise ScoringError(f"{name}: not a readable Parquet file: {exc}") from None
        pieces.extend([(name, g) for g in range(groups)] or [(name, None)])
    return pieces


def _read_parquet_piece(piece: tuple[str, int | None]) -> pd.DataFrame:
    import pyarrow.parquet as pq

    from .scoring import parquet_frame

    name, group = piece
    pf = pq.ParquetFile(name)
    table = pf.schema_arrow.empty_table() if group is None else pf.read_row_group(group)
    return parquet_frame(table, name)


def _read_parquet(source: str) -> Any:
    """Parquet input, one partition per row group, read by the local reader's own conversion
    (:func:`modclf.scoring.parquet_frame`), so that a stored pandas index is a column here too
    (``dd.read_parquet`` drops an unnamed one and fails on a MultiIndex)."""
    import dask.dataframe as dd

    pieces = _parquet_pieces(source)
    if not pieces:
        raise ScoringError(f"{source}: no input files found")
    meta = _read_parquet_piece((pieces[0][0], None))
    return dd.from_map(_read_parquet_piece, pieces, meta=meta, enforce_metadata=False)


def _part_name(i: int) -> str:
    """Zero-padded so that the parts sort in partition order."""
    return f"{i:06d}"


def _summarize(out: Path, fmt: str, prefix: str) -> ScoreSummary:
    """Counts read back from the written dataset (only the columns needed)."""
    cols = [prefix + "label", prefix + "error", prefix + "action"]
    files = sorted(p for p in out.rglob("*") if p.is_file() and not p.name.startswith((".", "_")))
    summary = ScoreSummary()
    for f in files:
        if fmt == "parquet":
            df = pd.read_parquet(f, columns=cols)
        elif fmt == "csv":
            df = pd.read_csv(f, usecols=cols, dtype=str, keep_default_na=False)
        else:
            df = pd.read_json(f, lines=True, dtype=False)[cols]
        err = df[cols[1]].fillna("")
        summary.add({"rows": len(df), "scored": int((err == "").sum()),
                     "errors": Counter(err[err != ""].tolist()),
                     "labels": Counter(df[cols[0]][err == ""].tolist()),
                     "actions": Counter(df[cols[2]].tolist())})
    unknown = set(summary.labels) - set(LABELS)
    if unknown:  # the written dataset does not read back as it was written: never report it as done
        raise ScoringError(f"{out}: the scored output reads back with unknown labels {sorted(map(ascii, unknown))[:5]}")
    return summary
