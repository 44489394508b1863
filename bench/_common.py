"""Helpers shared by the benchmarks: corpus resampling, child-process measurement, results output.

Benchmarks measure; they assert nothing. Every number is printed next to a baseline measured in
the same run on the same input, because absolute numbers on a shared 2-core machine drift.
"""

from __future__ import annotations

import json
import os
import platform
import re
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


# --- distinct comments for the training benchmark ------------------------------------------------

_WORD_SPLIT = re.compile(r"(\w+)")
_AFFIXES = ("s", "ed", "ing", "er", "ers", "ism", "ist", "ly", "ish", "less", "ness", "gate")
_PREFIXES = ("un", "re", "anti", "pro", "ex", "over", "non", "pseudo")


def heaps_fit(texts: Sequence[str], seed: int = 0) -> tuple[float, float]:
    """Heaps' law ``types = K * tokens ** beta`` fitted on ``texts`` (word tokens ``\\w+``, shuffled order).

    Fitted on the upper half of the curve, where the rate has settled.
    """
    order = np.random.default_rng(seed).permutation(len(texts))
    seen: set[str] = set()
    tokens, points = 0, []
    for i in order:
        words = _WORD_SPLIT.findall(texts[i])
        tokens += len(words)
        seen.update(words)
        points.append((tokens, len(seen)))
    pts = np.asarray(points[len(points) // 2:], dtype=np.float64)
    beta, log_k = np.polyfit(np.log(pts[:, 0]), np.log(pts[:, 1]), 1)
    return float(np.exp(log_k)), float(beta)


class _SyntheticLexicon:
    """New words for the generated comments: their number follows a Heaps curve, their use a power law.

    Draw ``j`` at corpus token position ``T`` is a new word with probability
    ``min(1, K * beta * T**(beta - 1) / q)`` (so the expected number of new words after ``T`` tokens
    is ``K * T**beta``), else a repeat of a uniformly chosen earlier draw (preferential attachment,
    as in Simon's and Pitman-Yor's models: a word's share grows with its use, frequencies come out
    Zipf-like and about half of the words occur once). A new word is spelled from a corpus word
    varied the way new words of real comments are: a typo (letter substituted, inserted, dropped or
    swapped), a compound of two words, an affix, or digits (user names, model numbers).
    """

    def __init__(self, base_words: Sequence[str], k: float, beta: float, q: float, rng: np.random.Generator):
        self.base = list(base_words)
        self.taken = set(self.base)
        self.k, self.beta, self.q, self.rng = k, beta, q, rng
        self.spellings: list[str] = []
        self.draws: list[int] = []

    def _spell(self) -> str:
        rng, base = self.rng, self.base
        while True:
            w = base[rng.integers(len(base))]
            kind = rng.random()
            letters = w if any(c.isalpha() for c in w) else "abcdefghijklmnopqrstuvwxyz"
            letters = [c for c in letters if c.isalpha()] or list("abcdefghijklmnopqrstuvwxyz")
            pos = int(rng.integers(len(w) + 1))
            if kind < 0.4:  # typo
                op = rng.integers(4)
                c = letters[rng.integers(len(letters))]
                if op == 0 and pos < len(w):
                    w = w[:pos] + c + w[pos + 1:]
                elif op == 1:
                    w = w[:pos] + c + w[pos:]
                elif op == 2 and len(w) > 3 and pos < len(w):
                    w = w[:pos] + w[pos + 1:]
                elif pos + 1 < len(w):
                    w = w[:pos] + w[pos + 1] + w[pos] + w[pos + 2:]
                else:
                    w = w + c
            elif kind < 0.6:  # compound
                w = w + base[rng.integers(len(base))].lower()
            elif kind < 0.8:  # affix
                w = (w + _AFFIXES[rng.integers(len(_AFFIXES))]) if rng.random() < 0.7 else \
                    (_PREFIXES[rng.integers(len(_PREFIXES))] + w.lower())
            else:  # digits
                w = w + str(int(rng.integers(10, 10_000)))
            if w not in self.taken:
                self.taken.add(w)
                return w

    def draw(self, position: int, force_new: bool = False) -> str:
        p_new = min(1.0, self.k * self.beta * max(position, 1) ** (self.beta - 1) / self.q)
        if force_new or not self.draws or self.rng.random() < p_new:
            j = len(self.spellings)
            self.spellings.append(self._spell())
        else:
            j = self.draws[int(self.rng.integers(len(self.draws)))]
        self.draws.append(j)
        return self.spellings[j]


def distinct_comments(df: pd.DataFrame, n: int, seed: int = 0, q: float = 0.05) -> pd.DataFrame:
    """``n`` distinct comments of real length made from the corpus, each row a varied corpus comment.

    Row ``i`` is a corpus comment drawn at random (label, topic and length kept) in which each word
    is, with probability ``q``, replaced by a word of a synthetic lexicon (:class:`_SyntheticLexicon`)
    whose size grows with the tokens generated as Heaps' law fitted on the corpus itself
    (:func:`heaps_fit`), so the vocabulary of n rows grows like that of n comments of the same kind
    rather than stopping at the corpus's. Word bigrams and character n-grams around new words grow
    with it. No text occurs twice: a row identical to an earlier one gets one more word replaced
    by a word of the lexicon until it is unique.
    """
    texts = df["text"].tolist()
    k, beta = heaps_fit(texts, seed)
    pieces = [_WORD_SPLIT.split(t) for t in texts]  # odd positions are words
    base = sorted({w for p in pieces for w in p[1::2] if not w.isdigit()})
    rng = np.random.default_rng(seed)
    lexicon = _SyntheticLexicon(base, k, beta, q, rng)
    src = rng.integers(0, len(texts), n)
    seen: set[str] = set()
    out = np.empty(n, dtype=object)
    position = 0
    for i, s in enumerate(src):
        parts = list(pieces[s])
        words = range(1, len(parts), 2)
        for j, u in zip(words, rng.random(len(words))):
            if u < q:
                w = lexicon.draw(position + j // 2)
                parts[j] = w.capitalize() if parts[j][:1].isupper() else w
        position += len(words)
        text = "".join(parts)
        attempts = 0
        while text in seen:
            attempts += 1
            if len(parts) > 1:
                j = 2 * int(rng.integers(len(parts) // 2)) + 1
                parts[j] = lexicon.draw(position, force_new=attempts > 3)
            else:
                parts[0] = parts[0] + " " + lexicon.draw(position, force_new=attempts > 3)
            text = "".join(parts)
        seen.add(text)
        out[i] = text
    result = df.iloc[src].reset_index(drop=True)
    result["text"] = out
    if "id" in result.columns:
        result["id"] = [f"g{i:08d}" for i in range(n)]
    return result
