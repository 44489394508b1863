#!/usr/bin/env python
"""Training time and peak memory by corpus size, beside the naive baseline on the same data.

For each size (default 10k, 100k, 1M comments) a training set is drawn with replacement from
data/comments.csv (~9k distinct comments, so larger sets repeat them: vocabulary and model size
stop growing, while the matrices and the solver's work grow with the row count), then:

- the shipped model: ``train.py --folds 0`` (read + validate, fit, save), as a user runs it;
- the naive baseline (default TfidfVectorizer + LogisticRegression) fitted on the same file.

Each runs in its own process, bounded by --time-limit seconds and --memory-limit MB (killed beyond
either, and reported as such with the time and memory reached); peak memory is the process's maximum RSS (getrusage) and the
sampled RSS of its process tree.

    python bench/bench_training.py                         # 10k, 100k, 1M
    python bench/bench_training.py --sizes 10000,100000 --time-limit 600
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PYTHON, ROOT, read_corpus, resample, run_measured, table, write_results  # noqa: E402

log = logging.getLogger("bench_training")

_FIT_BASELINE = """
import sys, pandas as pd
sys.path.insert(0, {root!r})
from modclf.model import build_baseline
df = pd.read_csv({path!r}, dtype=str, keep_default_na=False)
build_baseline(0).fit(df["text"].tolist(), df["label"].tolist())
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="10000,100000,1000000", help="training set sizes (default: %(default)s)")
    p.add_argument("--time-limit", type=float, default=1800, help="seconds allowed per training run (default: %(default)s)")
    p.add_argument("--memory-limit", type=float, default=22000,
                   help="MB of RSS at which a run is stopped, so the shared machine never swaps (default: %(default)s)")
    p.add_argument("--skip-baseline", action="store_true", help="do not train the naive baseline")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    corpus = read_corpus()
    sizes = [int(n) for n in args.sizes.split(",") if n]
    log.info("training sets drawn with replacement from data/comments.csv (%d comments); limits per run: %.0f s, %.0f MB",
             len(corpus), args.time_limit, args.memory_limit)
    records = []
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        for n in sizes:
            data = Path(tmp) / f"train-{n}.csv"
            resample(corpus, n, args.seed).to_csv(data, index=False)
            runs = {"model": run_measured([PYTHON, "train.py", "--folds", "0", "--data", str(data), "--model-dir",
                                           str(Path(tmp) / f"model-{n}"), "--no-progress"], args.time_limit,
                                          memory_limit_mb=args.memory_limit)}
            if not args.skip_baseline:
                runs["naive baseline"] = run_measured(
                    [PYTHON, "-c", _FIT_BASELINE.format(root=str(ROOT), path=str(data))], args.time_limit,
                    memory_limit_mb=args.memory_limit)
            for name, run in runs.items():
                status = run.status
                records.append({"rows": n, "what": name, "status": status, "seconds": run.seconds,
                                "peak_rss_mb": run.peak_rss_mb, "peak_rss_mb_all_processes": run.peak_tree_rss_mb,
                                **({} if run.ok else {"stderr_tail": run.stderr[-800:]})})
                log.info("%s rows=%d: %s in %.0f s, peak %.0f MB", name, n, status, run.seconds, run.peak_rss_mb)
            data.unlink()
    rows = []
    for r in records:
        base = next((b for b in records if b["rows"] == r["rows"] and b["what"] == "naive baseline"), None)
        ratio = r["seconds"] / base["seconds"] if base and base["status"] == "ok" and r["status"] == "ok" else float("nan")
        seconds = r["seconds"] if r["status"] == "ok" else f">{r['seconds']:.0f} ({r['status']})"
        rows.append([r["what"], r["rows"], seconds, ratio, r["peak_rss_mb"], r["peak_rss_mb_all_processes"]])
    print("\n== training time and peak memory (sets resampled from data/comments.csv; train.py --folds 0)")
    print(table(rows, ["model", "rows", "seconds", "x baseline time", "peak MB", "peak MB (tree)"]))
    path = write_results("training", {"input": "data/comments.csv resampled with replacement",
                                      "time_limit_s": args.time_limit,
                                      "memory_limit_mb": args.memory_limit, "runs": records})
    print(f"\nresults: {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
