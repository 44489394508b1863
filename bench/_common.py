"""Helpers shared by the benchmarks: corpus resampling, child-process measurement, results output.

Benchmarks measure; they assert nothing. Every number is printed next to a baseline measured in
the same run on the same input, because absolute numbers on a shared 2-core machine drift.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CORPUS = ROOT / "data" / "comments.csv"
PYTHON = sys.executable
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def read_corpus(path: Path = CORPUS) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def resample(df: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` rows drawn with replacement (the corpus has ~9k comments; larger inputs repeat them)."""
    idx = np.random.default_rng(seed).integers(0, len(df), n)
    out = df.iloc[idx].reset_index(drop=True)
    if "id" in out.columns:
        out["id"] = [f"r{i:08d}" for i in range(n)]
    return out


def machine() -> dict[str, Any]:
    """What the numbers were measured on, including how busy the machine was."""
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def write_results(name: str, payload: dict[str, Any]) -> Path:
    """bench/results/NAME.json (latest) plus a timestamped copy."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": machine(), **payload}
    text = json.dumps(payload, indent=2, default=str) + "\n"
    stamped = RESULTS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    stamped.write_text(text)
    (RESULTS / f"{name}.json").write_text(text)
    return stamped


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # nan
            return "-"
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _tree_rss_kb(pid: int) -> int:
    """Resident memory of ``pid`` and all its descendants, from /proc."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


@dataclass
class Run:
    """One child process: wall time, exit status, memory, output."""

    seconds: float
    returncode: int | None  # None: stopped at the time or memory limit
    peak_rss_mb: float  # largest single process (getrusage via wait4; includes waited-for workers)
    peak_tree_rss_mb: float  # sum over the process tree, sampled every 50 ms
    cpu_s: float  # user + system CPU seconds of the command and the workers it waited for
    stdout: str
    stderr: str

    stopped: str | None = None  # "time limit" / "memory limit" when it was killed

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def status(self) -> str:
        return "ok" if self.ok else (self.stopped or f"exit {self.returncode}")


def run_measured(cmd: Sequence[str], timeout: float, env: dict[str, str] | None = None,
                 memory_limit_mb: float | None = None) -> Run:
    """Run ``cmd`` to completion, measuring its memory.

    It is killed after ``timeout`` seconds, or when its processes together hold more than
    ``memory_limit_mb`` (the machine is shared: a benchmark must not push others into swap).
    """
    with tempfile.TemporaryFile("w+") as out_f, tempfile.TemporaryFile("w+") as err_f:
        start = time.perf_counter()
        proc = subprocess.Popen(list(cmd), stdout=out_f, stderr=err_f, cwd=ROOT, env={**os.environ, **(env or {})},
                                start_new_session=True)
        peak = 0
        stopped = None
        while True:  # reap it with wait4 to get this child's own resource usage
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            peak = max(peak, _tree_rss_kb(proc.pid))
            if time.perf_counter() - start > timeout:
                stopped = "time limit"
            elif memory_limit_mb and peak > memory_limit_mb * 1024:
                stopped = "memory limit"
            if stopped:
                os.killpg(proc.pid, signal.SIGKILL)  # its own session: the command and its workers only
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out_f.seek(0)
        err_f.seek(0)
        return Run(seconds, None if stopped else proc.returncode, usage.ru_maxrss / 1024, peak / 1024,
                   usage.ru_utime + usage.ru_stime, out_f.read(), err_f.read(), stopped)
