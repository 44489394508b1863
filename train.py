#!/usr/bin/env python
"""Train the moderation classifier, or evaluate the saved model: `modclf train` / `modclf eval`.

    python train.py                         # train on data/comments.csv, write model/ (CV report first)
    python train.py --data a.csv b.csv      # train on other labeled files
    python train.py --eval labeled.csv      # evaluate model/ on a labeled CSV (= modclf eval labeled.csv)

Every option: `python train.py --help` (train) and `modclf eval --help`.
"""

from __future__ import annotations

import sys
from typing import Sequence

from modclf.cli import main as modclf_main


def main(argv: Sequence[str] | None = None) -> int:
    """``--eval FILE...`` runs ``modclf eval FILE...``; anything else runs ``modclf train``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--eval" in args:
        i = args.index("--eval")
        files = []
        j = i + 1
        while j < len(args) and not args[j].startswith("-"):
            files.append(args[j])
            j += 1
        rest = args[:i] + args[j:]
        return modclf_main(["eval", *files, *rest])
    if "-h" in args or "--help" in args:  # argparse names the subcommand it runs: say what this script adds
        print("train.py = `modclf train` (options below); `python train.py --eval FILE...` = `modclf eval FILE...`"
              " (options: `modclf eval --help`)\n")
    return modclf_main(["train", *args])


if __name__ == "__main__":
    sys.exit(main())
