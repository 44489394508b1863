#!/usr/bin/env python
"""Training time and peak memory by corpus size: the memory-lean training, the previous one, the naive baseline.

Input (default ``--input distinct``): for each size (default 10k, 100k, 1M, 2M comments) a set
of *distinct* comments of real length, made from data/comments.csv by
``_common.distinct_comments``: each row is a corpus comment drawn at random (label and length
kept) in which each word is, with probability 5%, replaced by a word of a synthetic lexicon whose
size grows with the tokens generated as Heaps' law fitted on the corpus itself
(``types = K * tokens ** beta``, about K 24, beta 0.56) and whose words recur with Zipf-like
frequencies (new words are typos, compounds, affixes and digit suffixes of corpus words). No text
occurs twice. So the vocabulary, the number of features and the model grow with the rows as they
would on an archive of real comments of the same kind, rather than stopping at the corpus's
(~14-17k comments). It is still generated text: its n-gram statistics are the corpus's plus a
synthetic tail, not a real archive's. ``--input resampled`` draws rows with replacement instead
(the previous benchmark input: the vocabulary stops growing, so it flatters every method).

For each size, each in its own process:

- **lean**: ``modclf train --folds 0`` (read + validate, fit, save), as a user runs it, with
  ``fit_model`` set to ``modclf.fitting.fit_pipeline_lean`` (the memory-lean fit fit_model uses);
- **previous**: the same command with ``fit_model`` set to scikit-learn's own ``Pipeline.fit``,
  what it was before modclf/fitting.py (sizes up to ``--previous-max-rows``);
- **naive baseline**: default TfidfVectorizer + LogisticRegression fitted on the same file.

Every run has one BLAS thread (``OPENBLAS_NUM_THREADS=1``: on this shared 2-core machine BLAS
threads spinning beside other jobs made scikit-learn's lbfgs, which calls BLAS every iteration,
up to 20x slower; the lean fit does not use BLAS). Each run is bounded by --time-limit seconds
and --memory-limit MB (killed beyond either, and reported as such with the time and memory
reached; the machine is shared, so it must not run out of memory).
Peak memory is the process's maximum RSS (getrusage) and the sampled RSS of its process tree.
The table gives the lean training's time and memory as ratios to the previous training's and
its time as a ratio to the baseline's, each measured in the same run on the same file.

    python bench/bench_training.py                          # 10k, 100k, 1M, 2M; a few hours
    python bench/bench_training.py --sizes 10000,100000 --previous-max-rows 100000
    python bench/bench_training.py --sizes 1000000 --input resampled
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    PYTHON,
    ROOT,
    distinct_comments,
    heaps_fit,
    read_corpus,
    resample,
    run_measured,
    table,
    write_results,
)

log = logging.getLogger("bench_training")

#: Environment of every measured run (see the module docstring).
_ENV = {"OPENBLAS_NUM_THREADS": "1"}

_FIT_BASELINE = """
import sys, pandas as pd
sys.path.insert(0, {root!r})
from modclf.model import build_baseline
df = pd.read_csv({path!r}, dtype=str, keep_default_na=False)
build_baseline(0).fit(df["text"].tolist(), df["label"].tolist())
"""

#: modclf train --folds 0 with a given fit: the memory-lean one (modclf.fitting) or scikit-learn's own
#: Pipeline.fit (what fit_model did before modclf/fitting.py). Both set explicitly, so the
#: benchmark measures the two methods whichever one fit_model uses.
_TRAIN_WITH = """
import sys
sys.path.insert(0, {root!r})
import modclf.training
from modclf.model import build_pipeline, prior_class_weight
from modclf.fitting import fit_pipeline_lean

def fit_previous(texts, labels, seed=0):
    return build_pipeline(seed, class_weight=prior_class_weight(labels)).fit(list(texts), list(labels))

def fit_lean(texts, labels, seed=0):
    return fit_pipeline_lean(build_pipeline(seed, class_weight=prior_class_weight(labels)), texts, labels)

modclf.training.fit_model = {fit}
from modclf.cli import main
sys.exit(main(["train", "--folds", "0", "--data", {path!r}, "--model-dir", {model_dir!r}, "--no-progress"]))
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="10000,100000,1000000,2000000", help="training set sizes (default: %(default)s)")
    p.add_argument("--input", choices=["distinct", "resampled"], default="distinct",
                   help="distinct generated comments, or corpus rows drawn with replacement (default: %(default)s)")
    p.add_argument("--previous-max-rows", type=int, default=1_000_000,
                   help="run the previous training only up to this many rows (default: %(default)s)")
    p.add_argument("--time-limit", type=float, default=10800, help="seconds allowed per training run (default: %(default)s)")
    p.add_argument("--memory-limit", type=float, default=16000,
                   help="MB of RSS at which a run is stopped, so the shared 24 GB machine never runs out "
                        "(default: %(default)s)")
    p.add_argument("--skip-baseline", action="store_true", help="do not train the naive baseline")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def _features(model_dir: Path) -> int | None:
    """Number of features of a trained model (from its model.json), or None."""
    try:
        meta = json.loads((model_dir / "model.json").read_text())
        return int(sum(meta["pipeline"]["features"].values()))
    except (OSError, ValueError, KeyError):
        return None


def _ratio(a: dict, b: dict | None, key: str) -> float:
    if b is None or a["status"] != "ok" or b["status"] != "ok":
        return float("nan")
    return a[key] / b[key]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    corpus = read_corpus()
    sizes = [int(n) for n in args.sizes.split(",") if n]
    if args.input == "distinct":
        k, beta = heaps_fit(corpus["text"].tolist(), args.seed)
        described = (f"distinct comments made from data/comments.csv ({len(corpus)} comments; 5% of words from a "
                     f"synthetic lexicon growing as the corpus's Heaps law types = {k:.1f} * tokens^{beta:.3f})")
    else:
        described = f"rows drawn with replacement from data/comments.csv ({len(corpus)} distinct comments)"
    log.info("input: %s; limits per run: %.0f s, %.0f MB", described, args.time_limit, args.memory_limit)
    records = []
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        # not measured: compiles (or loads) the lean fit's numba kernels, as a machine's first training does
        warm = Path(tmp) / "warm-up.csv"
        corpus.groupby("label").head(100).to_csv(warm, index=False)
        run_measured([PYTHON, "-c", _TRAIN_WITH.format(root=str(ROOT), fit="fit_lean", path=str(warm),
                                                       model_dir=str(Path(tmp) / "warm"))], args.time_limit, env=_ENV)
        for n in sizes:
            data = Path(tmp) / f"train-{n}.csv"
            frame = distinct_comments(corpus, n, args.seed) if args.input == "distinct" else \
                resample(corpus, n, args.seed)
            frame.to_csv(data, index=False)
            del frame
            models = {name: Path(tmp) / f"{name}-{n}" for name in ("lean", "previous")}
            fits = {"lean": "fit_lean", "previous": "fit_previous"}
            runs = {}
            for name, fit in fits.items():
                if name == "previous" and n > args.previous_max_rows:
                    continue
                runs[name] = run_measured(
                    [PYTHON, "-c", _TRAIN_WITH.format(root=str(ROOT), fit=fit, path=str(data),
                                                      model_dir=str(models[name]))],
                    args.time_limit, env=_ENV, memory_limit_mb=args.memory_limit)
            if not args.skip_baseline:
                runs["naive baseline"] = run_measured(
                    [PYTHON, "-c", _FIT_BASELINE.format(root=str(ROOT), path=str(data))], args.time_limit,
                    env=_ENV, memory_limit_mb=args.memory_limit)
            for name, run in runs.items():
                records.append({"rows": n, "what": name, "status": run.status, "seconds": run.seconds,
                                "peak_rss_mb": run.peak_rss_mb, "peak_rss_mb_all_processes": run.peak_tree_rss_mb,
                                "features": _features(models[name]) if name in models else None,
                                **({} if run.ok else {"stderr_tail": run.stderr[-800:]})})
                log.info("%s rows=%d: %s in %.0f s, peak %.0f MB", name, n, run.status, run.seconds, run.peak_rss_mb)
            data.unlink()
    rows = []
    for r in records:
        same = {b["what"]: b for b in records if b["rows"] == r["rows"]}
        seconds = r["seconds"] if r["status"] == "ok" else f">{r['seconds']:.0f} ({r['status']})"
        peak = r["peak_rss_mb"] if r["status"] == "ok" else f">{r['peak_rss_mb']:.0f}"
        vs_previous = r["what"] == "lean" and "previous" in same
        rows.append([r["what"], r["rows"], r["features"] if r["features"] is not None else "-", seconds, peak,
                     _ratio(r, same.get("previous"), "seconds") if vs_previous else float("nan"),
                     _ratio(r, same.get("previous"), "peak_rss_mb") if vs_previous else float("nan"),
                     _ratio(r, same.get("naive baseline"), "seconds") if r["what"] != "naive baseline"
                     else float("nan")])
    print(f"\n== training time and peak memory ({args.input} input: {described}; modclf train --folds 0)")
    print(table(rows, ["training", "rows", "features", "seconds", "peak MB", "x previous time", "x previous memory",
                       "x baseline time"]))
    print("lean: modclf.fitting.fit_pipeline_lean; previous: scikit-learn's Pipeline.fit; "
          "'-': did not run or was stopped")
    path = write_results("training", {"input": described, "input_kind": args.input, "time_limit_s": args.time_limit,
                                      "memory_limit_mb": args.memory_limit, "runs": records})
    print(f"\nresults: {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
