#!/usr/bin/env python
"""Score a file of comments with the trained model (offline batch scoring).

    python score.py comments.csv -o scored.csv
    python score.py archive.parquet -o scored.parquet --workers 2 --resume
    python score.py big.csv -o out/ --engine dask --scheduler tcp://10.0.0.5:8786
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from modclf.cli import add_common_logging, exit_on_user_error, UserError
from modclf.model import DEFAULT_MODEL_DIR
from modclf.scoring import DEFAULT_CHUNK_SIZE, ScoringError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Add label, confidence, p_<label> and error columns to every row of a comment file. "
        "Formats by extension: .csv, .jsonl (JSON Lines), .parquet. Rows without usable text are kept "
        "with an empty label and a reason in 'error'; output rows == input rows, in order.",
    )
    p.add_argument("input", help="input file (.csv, .jsonl or .parquet); with --engine dask also a glob or directory")
    p.add_argument("-o", "--output", required=True,
                   help="output file (format from its extension); with --engine dask, an output directory")
    p.add_argument("--text-column", default="text", help="column holding the comment text (default: text)")
    p.add_argument("--prefix", default="", help="prefix for the added columns, e.g. pred_ (default: none)")
    p.add_argument("--model-dir", default=str(DEFAULT_MODEL_DIR), help="trained model directory (default: %(default)s)")
    p.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE,
                   help="rows read and scored at a time; bounds memory (default: %(default)s)")
    p.add_argument("--workers", type=int, default=1,
                   help=f"worker processes for scoring (this machine has {os.cpu_count()} cores; default: 1)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run into the same output, keeping the chunks it finished")
    p.add_argument("--slow", action="store_true",
                   help="use the plain scikit-learn pipeline instead of the equivalent fast path")
    p.add_argument("--engine", choices=["local", "dask"], default="local",
                   help="local: this machine, streaming; dask: a Dask cluster, partitioned output (default: local)")
    p.add_argument("--scheduler", default=None,
                   help="with --engine dask: scheduler address (tcp://host:8786); default: a local cluster")
    p.add_argument("--partition-size", default="64MB",
                   help="with --engine dask: input bytes per partition for CSV/JSONL (default: 64MB)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show a progress bar (default: only when stderr is a terminal)")
    add_common_logging(p)
    return p.parse_args(argv)


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.engine == "dask":
            from modclf.distributed import score_dask

            summary = score_dask(args.input, args.output, model_dir=args.model_dir, text_column=args.text_column,
                                 prefix=args.prefix, scheduler=args.scheduler, partition_size=args.partition_size,
                                 fast=not args.slow)
        else:
            from modclf.scoring import score_file

            summary = score_file(args.input, args.output, model_dir=args.model_dir, text_column=args.text_column,
                                 prefix=args.prefix, chunk_size=args.chunk_size, workers=args.workers,
                                 resume=args.resume, fast=not args.slow, progress=args.progress)
    except ScoringError as exc:
        raise UserError(str(exc)) from None
    print(summary.format(), file=sys.stderr)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
