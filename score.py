#!/usr/bin/env python
"""Score a file of comments with the trained model (offline batch scoring): `modclf score`.

    python score.py comments.csv -o scored.csv                 # every core (--workers auto)
    python score.py archive.parquet -o scored.parquet --resume
    python score.py big.csv -o out/ --engine dask --scheduler tcp://10.0.0.5:8786

Every option: `python score.py --help`.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Sequence

from modclf.cli import main as modclf_main


def main(argv: Sequence[str] | None = None) -> int:
    return modclf_main(["score", *(sys.argv[1:] if argv is None else argv)])


def exit_now(code: int) -> None:
    """End the process without the interpreter's teardown.

    By then the output is complete and renamed, the workers have exited and the summary is
    printed; what is left is finalizing the modules numba and pandas loaded, which takes 0.1-0.3 s
    (a fifth of a small run). Log handlers and the standard streams are flushed first.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
