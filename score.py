#!/usr/bin/env python
"""Score a file of comments with the trained model (offline batch scoring): `modclf score`.

    python score.py comments.csv -o scored.csv
    python score.py archive.parquet -o scored.parquet --workers auto --resume
    python score.py big.csv -o out/ --engine dask --scheduler tcp://10.0.0.5:8786

Every option: `python score.py --help`.
"""

from __future__ import annotations

import sys
from typing import Sequence

from modclf.cli import main as modclf_main


def main(argv: Sequence[str] | None = None) -> int:
    return modclf_main(["score", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
