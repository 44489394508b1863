#!/usr/bin/env python
"""Inference speed: the fast path against the plain scikit-learn pipeline and the naive baseline.

Every engine scores the same input in the same run, so the ratios hold even when the machine is
busy; absolute numbers move with the load (the 1-minute load average is printed with them).

Input: comments of real-comment length. Each row gets a target length drawn from the lengths of
the real comments in ``../shared/eval/real_dev_labeled.csv`` (mean ~242 characters; where that file
is absent, from a log-normal fitted to them) and is filled with comments drawn from
``data/comments.csv`` (mean ~170 characters), joined by spaces and cut at the first space past the
target. Only lengths are taken from the evaluation file, never text.

1. batch throughput in this process (one core, median of --rounds interleaved rounds):
   FastPredictor.predict_proba, the shipped pipeline's predict_proba, and the naive baseline
   (default TfidfVectorizer + LogisticRegression, trained here on the corpus);
   then the CPU time per scored row, split into its parts (what bounds score.py's rate);
2. single-comment latency: p50/p99 of one predict_proba([text]) call, fast vs plain, on corpus
   comments and on the real-length ones;
3. score.py as a user runs it, with default flags (workers auto, default chunk size), on
   --score-rows rows, against the same command with --slow (the plain scikit-learn pipeline): wall
   clock from process start to exit (the output is renamed before exit), start-up included, next to
   the rate score.py prints (its clock starts in score_file, so only interpreter start-up and
   imports are left out), CPU time, peak memory, and whether both wrote identical labels;
4. score.py end to end on 1,000 comments (--small-runs runs): process start to renamed output;
5. optional (--workers, --memory-rows): the --workers/output-format sweep and peak memory by input
   size.

    python bench/bench_inference.py                       # model/, ~5 min on an idle 2-core machine
    python bench/bench_inference.py --model-dir /tmp/m --skip-score
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PYTHON, ROOT, read_corpus, run_measured, table, write_results  # noqa: E402

from modclf.model import DEFAULT_MODEL_DIR, FAST_META_KEY, build_baseline, load_artifact  # noqa: E402

log = logging.getLogger("bench_inference")

REAL_DEV = ROOT.parent / "shared" / "eval" / "real_dev_labeled.csv"
#: Log-normal fitted to the lengths of the 500 real dev comments (mean 241.5, median 121.5, max 2,126),
#: used where that file is absent.
REAL_LOG_MU, REAL_LOG_SIGMA, REAL_MAX = 4.788, 1.242, 2200


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    p.add_argument("--batch", type=int, default=20_000, help="comments per batch measurement (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds per engine (default: %(default)s)")
    p.add_argument("--breakdown-rows", type=int, default=5000, help="rows for the per-row CPU breakdown (default: %(default)s)")
    p.add_argument("--latency-calls", type=int, default=2000, help="single-comment calls per engine (default: %(default)s)")
    p.add_argument("--score-rows", type=int, default=200_000, help="CSV rows for score.py (default: %(default)s)")
    p.add_argument("--score-runs", type=int, default=3,
                   help="runs of score.py with default flags (median reported; --slow runs once) (default: %(default)s)")
    p.add_argument("--small-rows", type=int, default=1_000, help="rows of the end-to-end start-up run (default: %(default)s)")
    p.add_argument("--small-runs", type=int, default=5, help="runs of the start-up measurement (default: %(default)s)")
    p.add_argument("--workers", default="", help="optional sweep: score.py --workers values, e.g. 1,2 (default: none)")
    p.add_argument("--outputs", default="csv,parquet", help="output formats of the --workers sweep (default: %(default)s)")
    p.add_argument("--memory-rows", default="", help="optional: CSV sizes for peak memory, e.g. 100000,1000000 (default: none)")
    p.add_argument("--time-limit", type=float, default=1800, help="seconds allowed per score.py run (default: %(default)s)")
    p.add_argument("--skip-score", action="store_true", help="only the in-process measurements")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def real_lengths(n: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """``n`` target lengths distributed like real comments, and where the distribution came from."""
    if REAL_DEV.is_file():
        lengths = pd.read_csv(REAL_DEV, dtype=str, keep_default_na=False)["text"].str.len().to_numpy()
        return rng.choice(lengths[lengths > 0], n), f"lengths of {REAL_DEV.name} ({len(lengths)} real comments)"
    drawn = np.exp(rng.normal(REAL_LOG_MU, REAL_LOG_SIGMA, n)).clip(2, REAL_MAX).astype(int)
    return drawn, "log-normal fitted to real comment lengths (../shared/eval absent)"


def real_length_texts(corpus: Sequence[str], n: int, seed: int) -> tuple[list[str], str]:
    """``n`` comments of real-comment length made of corpus comments (see the module docstring)."""
    rng = np.random.default_rng(seed)
    targets, source = real_lengths(n, rng)
    picks = iter(rng.integers(0, len(corpus), int(n * 4) + 1000).tolist())
    out = []
    for target in targets.tolist():
        parts, total = [], -1
        while total < target:
            try:
                text = corpus[next(picks)]
            except StopIteration:
                picks = iter(rng.integers(0, len(corpus), n).tolist())
                continue
            parts.append(text)
            total += len(text) + 1
        text = " ".join(parts)
        cut = text.find(" ", target)
        out.append(text if cut < 0 else text[:cut])
    return out, source


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
    corpus_texts = corpus["text"].tolist()
    artifact = load_artifact(args.model_dir)
    start = time.perf_counter()
    fast = FastPredictor.from_artifact(artifact)
    fast_setup = time.perf_counter() - start
    naive = build_baseline(args.seed).fit(corpus_texts, corpus["label"].tolist())
    texts, length_source = real_length_texts(corpus_texts, args.batch, args.seed)
    mean_len = float(np.mean([len(t) for t in texts]))
    has_arrays = FAST_META_KEY in artifact.meta
    print(f"model {artifact.version} ({args.model_dir}); saved fast-path arrays: "
          f"{'yes' if has_arrays else 'NO (start-up unpickles the pipeline and builds the fast path)'}")
    print(f"input: comments of real length ({length_source}) filled with data/comments.csv comments "
          f"(mean {np.mean([len(t) for t in corpus_texts]):.0f} characters); {len(texts):,} for the in-process "
          f"measurements, mean length {mean_len:.1f} characters")
    print(f"machine: {os.cpu_count()} cores, 1-minute load average at start {os.getloadavg()[0]:.2f}")
    log.info("fast path set-up from the pipeline (tables + compiled kernels, cached): %.2f s", fast_setup)

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
    print(f"\n== 1. batch throughput in one process ({len(texts):,} comments of mean length {mean_len:.0f}, "
          f"median of {args.rounds} interleaved rounds; model only: no language identification or policy)")
    print(table(batch_rows, ["engine", "comments/s", "x plain", "x naive", "best comments/s"]))
    print(f"max |fast - plain| probability on 2,000 comments: {diff:.1e}")

    # 1b. where the CPU time of a scored row goes (what bounds score.py: every row pays all of it)
    breakdown = row_costs(args.model_dir, texts[:args.breakdown_rows], args.rounds)
    total = breakdown["score_frame (everything score.py does per row but I/O)"]
    print(f"\n== 1b. CPU time per scored row ({args.breakdown_rows:,} comments of mean length "
          f"{np.mean([len(t) for t in texts[:args.breakdown_rows]]):.0f}, best of {args.rounds}; fast path)")
    print(table([[name, us, 100 * us / total] for name, us in breakdown.items()], ["part", "us/row", "% of row"]))
    print(f"bound on {os.cpu_count()} fully available cores: {os.cpu_count() * 1e6 / total:,.0f} rows/s "
          "(before reading, writing and start-up)")

    # 2. single-comment latency, on corpus comments (as earlier measurements) and on real-length ones
    corpus_sample = [corpus_texts[i] for i in np.random.default_rng(args.seed).integers(0, len(corpus_texts), 5000)]
    lat_rows = []
    for kind, sample in (("corpus", corpus_sample), ("real-length", texts)):
        lat_fast = latencies(fast.predict_proba, sample, args.latency_calls)
        lat_plain = latencies(artifact.predict_proba, sample, max(200, args.latency_calls // 4))
        sample_len = float(np.mean([len(t) for t in sample[:args.latency_calls]]))
        for name, (wall, cpu) in (("fast path", lat_fast), ("plain pipeline", lat_plain)):
            lat_rows.append([f"{name}, {kind} comments (mean {sample_len:.0f} chars)", len(wall)]
                            + [float(np.percentile(x, q) * 1e3) for x in (wall, cpu) for q in (50, 99)])
    print("\n== 2. single-comment model time (one predict_proba([text]) call; wall clock and the thread's CPU time)")
    print(table(lat_rows, ["engine", "calls", "p50 ms", "p99 ms", "p50 ms CPU", "p99 ms CPU"]))
    for i in (0, 2):
        print(f"{lat_rows[i][0].split(', ', 1)[1]}: plain / fast p50 {lat_rows[i + 1][2] / lat_rows[i][2]:.1f}x, "
              f"p99 {lat_rows[i + 1][3] / lat_rows[i][3]:.1f}x")

    results = {
        "model_version": artifact.version, "model_dir": str(args.model_dir), "saved_fast_arrays": has_arrays,
        "input": {"kind": "real-length comments filled with data/comments.csv", "lengths": length_source,
                  "mean_length": mean_len},
        "batch": {"comments": len(texts), "rounds": args.rounds, "seconds": times, "comments_per_s": rate,
                  "fast_over_plain": rate["fast path"] / rate["plain pipeline"],
                  "fast_over_naive": rate["fast path"] / rate["naive baseline"], "max_abs_diff": diff},
        "latency_ms": {r[0]: {"calls": r[1], "p50": r[2], "p99": r[3], "p50_cpu": r[4], "p99_cpu": r[5]}
                       for r in lat_rows},
        "fast_setup_s": fast_setup,
        "row_cpu_us": breakdown,
    }
    if not args.skip_score:
        results["score"] = bench_score(args, corpus_texts)
    path = write_results("inference", results)
    print(f"\nresults: {path.relative_to(ROOT)}")
    return 0


def row_costs(model_dir: Path, texts: list[str], rounds: int) -> dict[str, float]:
    """CPU microseconds per row of the parts of scoring, as score.py runs them (lazy model, policy)."""
    from modclf.language import detect
    from modclf.moderator import bounded_window, clean_text
    from modclf.predict import score_frame
    from modclf.scoring import load_moderator
    from modclf.text import prenormalize

    moderator = load_moderator(model_dir)
    frame = pd.DataFrame({"text": texts})
    windows = [bounded_window(clean_text(t), moderator.window_chars).text for t in texts]
    prediction = moderator.predict(texts)
    parts: dict[str, Callable[[], object]] = {
        "text normalization (modclf.text.prenormalize)": lambda: [prenormalize(t) for t in windows],
        "model, fast path (normalization + kernel)": lambda: moderator.model.predict_proba(windows),
        "language identification (modclf.language.detect)": lambda: [detect(w) for w in windows],
        "Moderator.predict (window, model, language, segments)": lambda: moderator.predict(texts),
        "Moderator.decide (policy)": lambda: moderator.decide(prediction),
        "score_frame (everything score.py does per row but I/O)": lambda: score_frame(moderator, frame),
    }
    best = {name: float("inf") for name in parts}
    for _ in range(rounds):
        for name, fn in parts.items():
            start = time.process_time()
            fn()
            best[name] = min(best[name], time.process_time() - start)
    return {name: 1e6 * seconds / len(texts) for name, seconds in best.items()}


_RATE = re.compile(r"scored (\d+) of (\d+) rows in ([\d.]+)s")


def bench_score(args: argparse.Namespace, corpus_texts: list[str]) -> dict:
    """score.py as a user runs it: default flags against --slow, start-up, then the optional sweeps."""
    out: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-score-") as tmp:
        files: dict[int, tuple[Path, float]] = {}

        def csv_of(n: int) -> tuple[Path, float]:
            if n not in files:
                texts, _ = real_length_texts(corpus_texts, n, args.seed + 1)
                path = Path(tmp) / f"comments-{n}.csv"
                pd.DataFrame({"id": [f"r{i:08d}" for i in range(n)], "text": texts}).to_csv(path, index=False)
                files[n] = (path, float(np.mean([len(t) for t in texts])))
            return files[n]

        def score(n: int, extra: Sequence[str] = (), fmt: str = "csv", keep: bool = False) -> dict:
            src, _ = csv_of(n)
            output = Path(tmp) / f"scored-{n}-{len(extra)}-{time.monotonic_ns()}.{fmt}"
            load = os.getloadavg()[0]
            started = time.time()
            run = run_measured([PYTHON, "score.py", str(src), "-o", str(output), "--model-dir", str(args.model_dir),
                                "--no-progress", *extra], args.time_limit)
            m = _RATE.search(run.stderr)
            # the rename of the finished output sets its inode change time: process start -> output in place
            renamed = output.stat().st_ctime - started if output.is_file() else None
            rec = {"rows": n, "flags": " ".join(extra) or "(defaults)", "output": fmt, "ok": run.ok and output.is_file(),
                   "returncode": run.returncode, "wall_s": run.seconds, "to_rename_s": renamed,
                   "rows_per_s_wall": n / run.seconds if run.ok else None,
                   "rows_per_s_in_process": int(m.group(1)) / float(m.group(3)) if run.ok and m and float(m.group(3)) else None,
                   "cpu_s": run.cpu_s, "peak_rss_mb_all_processes": run.peak_tree_rss_mb,
                   "peak_rss_mb_largest_process": run.peak_rss_mb, "load_average_1m_before": load}
            if not rec["ok"]:
                rec["stderr_tail"] = run.stderr[-800:]
                log.info("score.py %s on %d rows did not finish (%s): %s", rec["flags"], n, run.status, run.stderr[-800:])
            if keep and rec["ok"]:
                rec["path"] = output
            else:
                output.unlink(missing_ok=True)
            return rec

        # 3. default flags against --slow, same input, same run
        n = args.score_rows
        _, big_mean = csv_of(n)
        fast_runs = [score(n, keep=(i == 0)) for i in range(args.score_runs)]
        plain = score(n, ["--slow"], keep=True)
        ok_fast = [r for r in fast_runs if r["ok"]]
        best = sorted(ok_fast, key=lambda r: r["wall_s"])[len(ok_fast) // 2] if ok_fast else fast_runs[0]
        same = None
        if ok_fast and plain["ok"] and "path" in fast_runs[0]:
            a = pd.read_csv(fast_runs[0]["path"], dtype=str, keep_default_na=False)
            b = pd.read_csv(plain["path"], dtype=str, keep_default_na=False)
            probs = [c for c in a.columns if c.startswith("p_")]
            same = {"labels_identical": bool((a["label"] == b["label"]).all()),
                    "actions_identical": bool((a["action"] == b["action"]).all()),
                    "rows": len(a), "max_abs_probability_diff": float(np.nanmax(np.abs(
                        a[probs].replace("", "nan").astype(float).to_numpy()
                        - b[probs].replace("", "nan").astype(float).to_numpy())))}
        for r in (*fast_runs, plain):
            r.pop("path", None)
        out["default_vs_slow"] = {"rows": n, "mean_length": big_mean, "fast_runs": fast_runs, "fast_median": best,
                                  "slow": plain, "comparison": same}
        rows = [[f"score.py (defaults), median of {len(ok_fast)} runs", best["wall_s"], best["rows_per_s_wall"],
                 best["rows_per_s_in_process"], n / best["cpu_s"] if best["cpu_s"] else float("nan"),
                 best["peak_rss_mb_all_processes"], best["load_average_1m_before"]],
                ["score.py --slow (plain pipeline)", plain["wall_s"], plain["rows_per_s_wall"],
                 plain["rows_per_s_in_process"], n / plain["cpu_s"] if plain["cpu_s"] else float("nan"),
                 plain["peak_rss_mb_all_processes"], plain["load_average_1m_before"]]]
        print(f"\n== 3. score.py with default flags (--workers auto = {os.cpu_count()} here) vs the plain pipeline "
              f"(--slow, otherwise the same), {n:,} CSV rows of mean length {big_mean:.1f}")
        print(table(rows, ["run", "wall s", "rows/s wall", "rows/s in-process", "rows per CPU s", "peak MB (all procs)",
                           "load avg before"]))
        print("wall: process start to exit (the output file is renamed before exit), interpreter start-up and imports "
              "included; in-process: the rate score.py prints (from score_file's start, model loading included)")
        print("fast runs (wall s): " + ", ".join(f"{r['wall_s']:.2f}" if r["ok"] else "failed" for r in fast_runs))
        if ok_fast and plain["ok"]:
            print(f"defaults / --slow: {best['rows_per_s_wall'] / plain['rows_per_s_wall']:.1f}x wall, "
                  f"{best['rows_per_s_in_process'] / plain['rows_per_s_in_process']:.1f}x in-process")
        if same is not None:
            print(f"identical labels: {'yes' if same['labels_identical'] else 'NO'} ({same['rows']:,} rows; actions "
                  f"identical: {'yes' if same['actions_identical'] else 'NO'}; max |p difference| "
                  f"{same['max_abs_probability_diff']:.1e})")

        # 4. start-up: a small file end to end
        small = [score(args.small_rows) for _ in range(args.small_runs)]
        ok_small = [r for r in small if r["ok"]]
        out["small"] = {"rows": args.small_rows, "mean_length": csv_of(args.small_rows)[1], "runs": small}
        print(f"\n== 4. score.py end to end on {args.small_rows:,} comments (mean length {csv_of(args.small_rows)[1]:.1f}), "
              f"default flags, {args.small_runs} runs")
        if ok_small:
            for label, key in (("process start to renamed output", "to_rename_s"), ("process start to exit", "wall_s")):
                values = [r[key] for r in ok_small]
                print(f"{label}: median {statistics.median(values):.2f} s, min {min(values):.2f}, max {max(values):.2f} "
                      f"(runs: {', '.join(f'{v:.2f}' for v in values)})")
            print(f"CPU s (all processes): median {statistics.median([r['cpu_s'] for r in ok_small]):.2f}; "
                  "1-minute load average before each run: " + ", ".join(f"{r['load_average_1m_before']:.1f}" for r in small))
        else:
            print("every run failed")

        # 5. optional sweeps
        workers = [w for w in args.workers.split(",") if w]
        if workers:
            sweep = []
            for fmt in [f for f in args.outputs.split(",") if f]:
                for w in workers:
                    sweep.append(score(n, ["--workers", w], fmt))
            out["workers_sweep"] = sweep
            rows = [[f"csv -> {r['output']}, {r['flags']}", r["wall_s"], r["rows_per_s_wall"] or float("nan"),
                     r["rows_per_s_in_process"] or float("nan"), n / r["cpu_s"] if r["cpu_s"] else float("nan"),
                     r["peak_rss_mb_all_processes"]] for r in sweep]
            print(f"\n== 5. score.py by --workers and output format ({n:,} CSV rows)")
            print(table(rows, ["run", "wall s", "rows/s wall", "rows/s in-process", "rows per CPU s", "peak MB (all procs)"]))
        sizes = [int(s) for s in args.memory_rows.split(",") if s]
        if sizes:
            mem = [score(s) for s in sizes]
            out["memory"] = mem
            rows = [[r["rows"], r["wall_s"], r["rows_per_s_in_process"] or float("nan"),
                     r["peak_rss_mb_largest_process"], r["peak_rss_mb_all_processes"]] for r in mem]
            print("\n== 5b. score.py peak memory by input size (default flags)")
            print(table(rows, ["rows", "wall s", "rows/s in-process", "peak MB (largest proc)", "peak MB (all procs)"]))
    return json.loads(json.dumps(out, default=str))


if __name__ == "__main__":
    sys.exit(main())
