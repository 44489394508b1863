#!/usr/bin/env python
"""Print the count tables of data/DATASHEET.md (labels, topics, batches, lengths) from a labeled CSV.

    python scripts/datasheet_counts.py                 # data/comments.csv
    python scripts/datasheet_counts.py other.csv

The tables are Markdown, ready to paste under "Counts"; the datasheet's figures come from here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from modclf.labels import LABELS  # noqa: E402

LENGTHS = [(1, 3, "1-3 words"), (4, 8, "4-8 words"), (9, 40, "9-40 words"), (41, 120, "41-120 words"),
           (121, 10**9, "over 120 words")]


def crosstab(df: pd.DataFrame, by: str, sort_by_total: bool) -> str:
    table = pd.crosstab(df[by], df["label"]).reindex(columns=list(LABELS), fill_value=0)
    table["total"] = table.sum(axis=1)
    table = table.sort_values("total", ascending=False) if sort_by_total else table.sort_index()
    lines = [f"| {by} | " + " | ".join(LABELS) + " | total |", "|---" * (len(LABELS) + 2) + "|"]
    lines += [f"| {idx} | " + " | ".join(str(v) for v in row) + " |" for idx, row in table.iterrows()]
    lines.append("| total | " + " | ".join(str(table[c].sum()) for c in [*LABELS, "total"]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("csv", nargs="?", default="data/comments.csv", help="labeled CSV (default: %(default)s)")
    args = p.parse_args(argv)
    df = pd.read_csv(args.csv, dtype=str, keep_default_na=False)
    counts = df["label"].value_counts()
    print(f"{len(df):,} rows\n\n| label | rows | share |\n|---|---|---|")
    for label in LABELS:
        print(f"| {label} | {counts.get(label, 0)} | {counts.get(label, 0) / len(df):.3f} |")
    print("\nPer topic:\n\n" + crosstab(df, "topic", sort_by_total=True))
    print("\nPer writing batch:\n\n" + crosstab(df, "batch", sort_by_total=False))
    words = df["text"].str.split().str.len()
    print("\nLength:\n\n| length | " + " | ".join(LABELS) + " |\n" + "|---" * (len(LABELS) + 1) + "|")
    for lo, hi, name in LENGTHS:
        sel = df[(words >= lo) & (words <= hi)]["label"].value_counts()
        print(f"| {name} | " + " | ".join(str(sel.get(label, 0)) for label in LABELS) + " |")
    print(f"\nnon-ASCII rows: {(~df['text'].map(str.isascii)).mean():.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
