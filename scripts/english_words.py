#!/usr/bin/env python
"""Build modclf/english_words.txt, the word list behind ``modclf.language.plainly_english``.

    python scripts/english_words.py                    # from data/comments.csv
    python scripts/english_words.py --check            # exit 1 when the shipped list differs

A word is listed when it occurs in at least ``--min-rows`` corpus rows that the bundled fastText
model reads as English with probability >= 0.9, and it is not relatively more frequent in the rows
the model reads as another language with that certainty ("de", "la", "die", "pour" occur in
English comments through names and quotes, but a sentence made of them is not English). The list
is built from the project's own corpus only, so it is reproducible from the repository.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from modclf.language import ENGLISH_WORDS_PATH, _get_model, clean_for_detection, english_tokens  # noqa: E402

SURE = 0.9


def build(texts: list[str], min_rows: int) -> list[str]:
    model = _get_model()
    english: Counter[str] = Counter()
    foreign: Counter[str] = Counter()
    n_english = n_foreign = 0
    for text in texts:
        cleaned = clean_for_detection(text)[:400]
        if not cleaned:
            continue
        labels, scores = model.predict(cleaned, k=1)
        if not labels or float(scores[0]) < SURE:
            continue
        words = set(english_tokens(cleaned.lower()))
        if labels[0] == "__label__en":
            english.update(words)
            n_english += 1
        else:
            foreign.update(words)
            n_foreign += 1
    return sorted(w for w, n in english.items()
                  if n >= min_rows and foreign[w] / max(n_foreign, 1) <= n / n_english)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("csv", nargs="?", default=str(ROOT / "data" / "comments.csv"),
                   help="labeled corpus to read the words from (default: %(default)s)")
    p.add_argument("--min-rows", type=int, default=3,
                   help="rows read as English a word must occur in (default: %(default)s)")
    p.add_argument("--check", action="store_true",
                   help="compare with the shipped list instead of writing it; exit 1 when they differ")
    args = p.parse_args(argv)
    texts = pd.read_csv(args.csv, dtype=str, keep_default_na=False)["text"].tolist()
    words = build(texts, args.min_rows)
    body = "\n".join(words) + "\n"
    if args.check:
        same = ENGLISH_WORDS_PATH.read_text(encoding="ascii") == body
        print(f"{ENGLISH_WORDS_PATH}: {'up to date' if same else 'differs from a rebuild'} ({len(words)} words)")
        return 0 if same else 1
    ENGLISH_WORDS_PATH.write_text(body, encoding="ascii")
    print(f"wrote {len(words)} words to {ENGLISH_WORDS_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
