#!/usr/bin/env python
"""Inference speed: the fast path against the plain scikit-learn pipeline and the naive baseline.

All engines score the same input in the same run, rounds interleaved (fast, plain, naive, fast,
...), so the ratios hold even when the machine is busy; absolute numbers move with the load.

1. batch throughput in this process (one core): FastPredictor.predict_proba, the shipped
   pipeline's predict_proba, and the naive baseline (default TfidfVectorizer + LogisticRegression,
   trained here on the same corpus), on --batch comments;
2. single-comment latency: p50/p99 of the model time of one predict_proba([text]) call, fast vs plain;
3. score.py end to end on a CSV (--score-rows) with --workers 1 and 2, CSV and Parquet output, wall
   clock including start-up and the rate score.py reports; then peak memory for --memory-rows
   (e.g. 100k and 1M) to show it is flat in the input size.

Inputs are comments drawn with replacement from data/comments.csv (~9k distinct comments).

    python bench/bench_inference.py                       # model/, everything (~10 min)
    python bench/bench_inference.py --model-dir /tmp/m --skip-score
"""

from __future__ import annotations

import argparse
import logging
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PYTHON, ROOT, read_corpus, resample, run_measured, table, write_results  # noqa: E402

from modclf.model import DEFAULT_MODEL_DIR, build_baseline, load_artifact  # noqa: E402

log = logging.getLogger("bench_inference")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    p.add_argument("--batch", type=int, default=20_000, help="comments per batch measurement (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds per engine (default: %(default)s)")
    p.add_argument("--latency-calls", type=int, default=2000, help="single-comment calls per engine (default: %(default)s)")
    p.add_argument("--score-rows", type=int, default=200_000, help="CSV rows for score.py throughput (default: %(default)s)")
    p.add_argument("--memory-rows", default="100000,1000000", help="CSV sizes for score.py peak memory (default: %(default)s)")
    p.add_argument("--workers", default="1,2", help="score.py --workers values (default: %(default)s)")
    p.add_argument("--outputs", default="csv,parquet",
                   help="output formats for the throughput runs; the input is always CSV (default: %(default)s)")
    p.add_argument("--time-limit", type=float, default=900, help="seconds allowed per score.py run (default: %(default)s)")
    p.add_argument("--skip-score", action="store_true", help="only the in-process measurements")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def interleaved(engines: dict[str, Callable[[], None]], rounds: int) -> dict[str, list[float]]:
    """Seconds per round for each engine, rounds interleaved across engines."""
    times: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(rounds):
        for name, fn in engines.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def latencies(predict: Callable[[list[str]], object], texts: Sequence[str], calls: int) -> tuple[np.ndarray, np.ndarray]:
    """Wall and CPU seconds per call. On a busy machine wall-clock p99 includes time spent descheduled;
    the thread's CPU time does not, so it shows the model's own cost."""
    wall, cpu = np.empty(calls), np.empty(calls)
    for i in range(calls):
        text = [texts[i % len(texts)]]
        c0, w0 = time.thread_time(), time.perf_counter()
        predict(text)
        wall[i], cpu[i] = time.perf_counter() - w0, time.thread_time() - c0
    return wall, cpu


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from modclf.fast import FastPredictor

    corpus = read_corpus()
    artifact = load_artifact(args.model_dir)
    start = time.perf_counter()
    fast = FastPredictor.from_artifact(artifact)
    fast_setup = time.perf_counter() - start
    naive = build_baseline(args.seed).fit(corpus["text"].tolist(), corpus["label"].tolist())
    texts = resample(corpus, args.batch, args.seed)["text"].tolist()
    log.info("input: %d comments drawn with replacement from %s (%d comments); model %s",
             len(texts), "data/comments.csv", len(corpus), artifact.version)
    log.info("fast path set-up (tables + compiled kernels, cached): %.2f s", fast_setup)

    # sanity: the fast path computes the same numbers (the tests check this thoroughly)
    check = texts[:2000]
    diff = float(np.abs(fast.predict_proba(check) - artifact.predict_proba(check)).max())

    # 1. batch throughput, one core
    times = interleaved({
        "fast path": lambda: fast.predict_proba(texts),
        "plain pipeline": lambda: artifact.predict_proba(texts),
        "naive baseline": lambda: naive.predict_proba(texts),
    }, args.rounds)
    rate = {name: len(texts) / statistics.median(t) for name, t in times.items()}
    batch_rows = [[name, rate[name], rate[name] / rate["plain pipeline"], rate[name] / rate["naive baseline"],
                   len(texts) / min(t)] for name, t in times.items()]
    print(f"\n== batch throughput, one process ({len(texts):,} comments, median of {args.rounds} interleaved rounds)")
    print(table(batch_rows, ["engine", "comments/s", "x plain", "x naive", "best comments/s"]))
    print(f"max |fast - plain| probability on 2,000 comments: {diff:.1e}")

    # 2. single-comment latency
    lat_fast = latencies(fast.predict_proba, texts, args.latency_calls)
    lat_plain = latencies(artifact.predict_proba, texts, max(200, args.latency_calls // 4))
    lat_rows = []
    for name, (wall, cpu) in (("fast path", lat_fast), ("plain pipeline", lat_plain)):
        lat_rows.append([name, len(wall)] + [float(np.percentile(x, q) * 1e3) for x in (wall, cpu) for q in (50, 99)])
    print("\n== single-comment model time (one predict_proba([text]) call; wall clock and the thread's CPU time)")
    print(table(lat_rows, ["engine", "calls", "p50 ms", "p99 ms", "p50 ms CPU", "p99 ms CPU"]))
    print(f"plain / fast: p50 {lat_rows[1][2] / lat_rows[0][2]:.1f}x, p99 {lat_rows[1][3] / lat_rows[0][3]:.1f}x "
          f"(CPU: p50 {lat_rows[1][4] / lat_rows[0][4]:.1f}x, p99 {lat_rows[1][5] / lat_rows[0][5]:.1f}x)")

    results = {
        "model_version": artifact.version, "model_dir": str(args.model_dir), "input": "data/comments.csv resampled",
        "batch": {"comments": len(texts), "rounds": args.rounds, "seconds": times, "comments_per_s": rate,
                  "fast_over_plain": rate["fast path"] / rate["plain pipeline"],
                  "fast_over_naive": rate["fast path"] / rate["naive baseline"], "max_abs_diff": diff},
        "latency_ms": {r[0]: {"calls": r[1], "p50": r[2], "p99": r[3], "p50_cpu": r[4], "p99_cpu": r[5]}
                       for r in lat_rows},
        "fast_setup_s": fast_setup,
    }
    if not args.skip_score:
        results["score"] = bench_score(args, corpus)
    path = write_results("inference", results)
    print(f"\nresults: {path.relative_to(ROOT)}")
    return 0


_RATE = re.compile(r"scored (\d+) of (\d+) rows in ([\d.]+)s")


def bench_score(args: argparse.Namespace, corpus) -> dict:  # type: ignore[no-untyped-def]
    """score.py as a user runs it: throughput by worker count, then peak memory by input size."""
    workers = [int(w) for w in args.workers.split(",")]
    sizes = [int(n) for n in args.memory_rows.split(",") if n]
    out: dict = {"throughput": [], "memory": []}
    with tempfile.TemporaryDirectory(prefix="bench-score-") as tmp:
        files: dict[int, Path] = {}

        def csv_of(n: int) -> Path:
            if n not in files:
                files[n] = Path(tmp) / f"comments-{n}.csv"
                resample(corpus[["id", "text"]], n, args.seed).to_csv(files[n], index=False)
            return files[n]

        def score(n: int, w: int, fmt: str = "csv") -> dict:
            output = Path(tmp) / f"scored-{n}-{w}.{fmt}"
            run = run_measured([PYTHON, "score.py", str(csv_of(n)), "-o", str(output), "--model-dir",
                                str(args.model_dir), "--workers", str(w), "--no-progress"], args.time_limit)
            output.unlink(missing_ok=True)
            m = _RATE.search(run.stderr)
            rec = {"rows": n, "workers": w, "output": fmt, "ok": run.ok, "returncode": run.returncode, "wall_s": run.seconds,
                   "rows_per_s_wall": n / run.seconds if run.ok else None,
                   "rows_per_s_scoring": int(m.group(1)) / float(m.group(3)) if run.ok and m else None,
                   "cpu_s": run.cpu_s, "rows_per_cpu_s": n / run.cpu_s if run.ok and run.cpu_s else None,
                   "peak_rss_mb_largest_process": run.peak_rss_mb, "peak_rss_mb_all_processes": run.peak_tree_rss_mb}
            if not run.ok:
                rec["stderr_tail"] = run.stderr[-500:]
                log.info("score.py rows=%d workers=%d did not finish (%s)", n, w, run.status)
            return rec

        formats = [f for f in args.outputs.split(",") if f]
        for fmt in formats:
            for w in workers:
                out["throughput"].append(score(args.score_rows, w, fmt))
        rows = [[f"csv -> {r['output']}, --workers {r['workers']}", r["rows"], r["wall_s"],
                 r["rows_per_s_wall"] or float("nan"), r["rows_per_s_scoring"] or float("nan"),
                 r["rows_per_cpu_s"] or float("nan"), r["peak_rss_mb_all_processes"]] for r in out["throughput"]]
        print(f"\n== score.py end to end ({args.score_rows:,} CSV rows; 'rows/s scoring' is the rate score.py prints: "
              "its clock starts before the model is loaded, so only interpreter start-up and imports are left out)")
        print(table(rows, ["run", "rows", "wall s", "rows/s wall", "rows/s scoring", "rows per CPU s",
                           "peak MB (all procs)"]))
        print("rows per CPU s: rows / (user + system CPU seconds of score.py and its workers, start-up "
              "included); what one fully available core sustains, whatever else runs on the machine")
        for fmt in formats:
            runs = [r for r in out["throughput"] if r["output"] == fmt and r["ok"]]
            for r in runs[1:]:
                print(f"{fmt}: --workers {r['workers']} / --workers {runs[0]['workers']}: "
                      f"{r['rows_per_s_scoring'] / runs[0]['rows_per_s_scoring']:.2f}x (scoring rate)")

        w = max(workers)
        for n in sizes:
            out["memory"].append(score(n, w))
        rows = [[r["rows"], r["wall_s"], r["rows_per_s_scoring"] or float("nan"), r["rows_per_cpu_s"] or float("nan"),
                 r["peak_rss_mb_largest_process"], r["peak_rss_mb_all_processes"]] for r in out["memory"]]
        print(f"\n== score.py peak memory by input size (--workers {w}, default --chunk-size)")
        print(table(rows, ["rows", "wall s", "rows/s scoring", "rows per CPU s", "peak MB (largest proc)",
                           "peak MB (all procs)"]))
        ok = [r for r in out["memory"] if r["ok"]]
        if len(ok) >= 2:
            print(f"{ok[-1]['rows']:,} rows / {ok[0]['rows']:,} rows: peak memory "
                  f"{ok[-1]['peak_rss_mb_all_processes'] / ok[0]['peak_rss_mb_all_processes']:.2f}x "
                  f"for {ok[-1]['rows'] / ok[0]['rows']:.0f}x the input")
    return out


if __name__ == "__main__":
    sys.exit(main())
