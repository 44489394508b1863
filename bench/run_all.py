#!/usr/bin/env python
"""Run every benchmark under bench/ (``bench_*.py``), one after another, each bounded in time.

    python bench/run_all.py                      # what `make bench` runs (model/ must exist)
    python bench/run_all.py --only inference training --time-limit 3600
    python bench/run_all.py --model-dir /tmp/m   # passed to the scripts that take --model-dir

Each script prints its own tables and writes bench/results/NAME.json; this prints a summary of
which ran, how long they took and their exit status, and exits non-zero if any failed.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run every bench/bench_*.py script.")
    p.add_argument("--only", nargs="+", metavar="NAME", help="run only these (e.g. inference service)")
    p.add_argument("--model-dir", help="passed as --model-dir to every script that accepts it")
    p.add_argument("--time-limit", type=float, default=5400, help="seconds allowed per script (default: %(default)s)")
    args = p.parse_args(argv)
    scripts = sorted(HERE.glob("bench_*.py"))
    if args.only:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in args.only]
    summary = []
    for script in scripts:
        cmd = [sys.executable, str(script)]
        if args.model_dir and "--model-dir" in script.read_text():
            cmd += ["--model-dir", args.model_dir]
        print(f"\n######## {script.name}: {' '.join(cmd[1:])}", flush=True)
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True)
        try:
            status = proc.wait(timeout=args.time_limit)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)  # the script's own session: it and what it started
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            status = None
        summary.append((script.name, time.perf_counter() - start, status))
    print("\n######## summary")
    for name, seconds, status in summary:
        state = "ok" if status == 0 else ("stopped at the time limit" if status is None else f"exit {status}")
        print(f"{name:28s} {seconds:8.0f} s  {state}")
    print(f"results: {HERE.relative_to(ROOT) / 'results'}/")
    return 0 if all(status == 0 for _, _, status in summary) else 1


if __name__ == "__main__":
    sys.exit(main())
