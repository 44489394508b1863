"""Explanations people can read: the model's exact n-gram contributions gathered into words of the
comment as it was written.

:meth:`modclf.moderator.LoadedModel.explain` gives every n-gram's exact share of a label's logit
(TF-IDF value x coefficient; intercept + all shares = the logit). Those are fragments of the
*normalized* text ("fals", "alse ", "is false"). :func:`word_spans` turns them into words:

1. **N-grams to normalized words.** Every n-gram of the comment is used (not only the top ones).
   A character n-gram (``char_wb``) occurs inside one or more normalized words: its contribution
   is shared among its occurrences equally. A word n-gram (a word, or two words) is shared among
   its occurrences and, within one, equally among its words. So each normalized word gets a total,
   and the totals plus the intercept still add up to the logit (checked to 1e-9, the floating-point
   rounding of the sums).
2. **Normalized words to the original text** (approximate by nature: normalization rewrites text:
   entities, tags, Unicode disguises, links become ``zzurl``, stretched letters are cut). Each
   whitespace-separated stretch of the original is normalized on its own and its normalized
   words are matched, in order, against the normalized comment (a stretch that does not match is
   re-synchronized a few words ahead). Normalized words left between two matched stretches (a
   link spelled over several stretches, "f r e e") are given the original text between them. A
   word with no original text (the ``zzcaps`` marker of a comment in capitals) is reported in
   ``unplaced`` with its contribution, so nothing is lost from the sum.
3. **Long comments.** A comment longer than the model's window is explained on its window (what
   the model read); the window's pieces are located in the original to give original offsets.

Offsets are Python string indices (Unicode code points) into the text as sent, ``end``
exclusive; a JavaScript client counting UTF-16 code units must convert for characters outside
the Basic Multilingual Plane.
"""

from __future__ import annotations

import bisect
import re
from collections import Counter, defaultdict
from typing import Any, Sequence

from .moderator import DEFAULT_WINDOW_CHARS, LoadedModel, clean_text
from .text import CAPS_TOKEN, normalize_text
from .window import SEPARATOR, bounded_window

#: Words ahead a stretch of the original is looked for when it does not match where expected.
RESYNC_WORDS = 4
_CHUNK = re.compile(r"\S+")
_CAPS = CAPS_TOKEN.strip()
#: The tolerance of the sum check: floating-point rounding of sums of a few thousand terms.
SUM_TOLERANCE = 1e-9


def _vectorizers(model: LoadedModel) -> dict[str, Any]:
    return dict(model.artifact.pipeline.named_steps["features"].transformer_list)


def _word_shares(model: LoadedModel, normalized: str, ngrams: Sequence[dict[str, Any]]) -> tuple[list[float], float]:
    """Each normalized word's total contribution (step 1), and what could not be placed in a word."""
    words = normalized.split(" ") if normalized else []
    shares = [0.0] * len(words)
    leftover = 0.0
    vectorizers = _vectorizers(model)
    # occurrences: n-gram -> list of (weight, word index); weights of one n-gram add up to its count
    occurrences: dict[tuple[str, str], list[tuple[float, int]]] = defaultdict(list)
    char = vectorizers.get("char")
    if char is not None:
        analyze = char.build_analyzer()
        for wi, word in enumerate(words):
            for gram, count in Counter(analyze(word)).items():
                occurrences[("char", gram)].append((float(count), wi))
    word_vec = vectorizers.get("word")
    if word_vec is not None:
        starts = [0]
        for word in words[:-1]:
            starts.append(starts[-1] + len(word) + 1)
        pattern = re.compile(word_vec.token_pattern)
        tokens = [(m.group(), bisect.bisect_right(starts, m.start()) - 1) for m in pattern.finditer(normalized)]
        low, high = word_vec.ngram_range
        for n in range(low, high + 1):
            for i in range(len(tokens) - n + 1):
                part = tokens[i:i + n]
                gram = " ".join(t for t, _ in part)
                for _, wi in part:
                    occurrences[("word", gram)].append((1.0 / n, wi))
    for g in ngrams:
        found = occurrences.get((g["kind"], g["ngram"]))
        if not found:
            leftover += g["contribution"]
            continue
        total = sum(w for w, _ in found)
        for weight, wi in found:
            shares[wi] += g["contribution"] * weight / total
    return shares, leftover


def _align(original: str, words: Sequence[str]) -> list[tuple[int, int] | None]:
    """The original stretch (start, end) of each normalized word, or None (step 2)."""
    chunks = [(m.start(), m.end(), [w for w in normalize_text(m.group()).split(" ") if w and w != _CAPS])
              for m in _CHUNK.finditer(original)]
    placed: list[tuple[int, int] | None] = [None] * len(words)
    i = 0
    pending_start: int | None = None  # start of unmatched original text since the last match
    pending_end = 0
    unassigned_from = 0

    def settle(upto: int) -> None:
        # normalized words unassigned_from..upto sit between two matches: give them the unmatched stretch
        if pending_start is not None:
            for k in range(unassigned_from, upto):
                if placed[k] is None and words[k] != _CAPS:
                    placed[k] = (pending_start, pending_end)

    for start, end, chunk_words in chunks:
        if not chunk_words:
            continue  # a stretch that normalizes to nothing (a lone tag, an invisible character)
        n = len(chunk_words)
        found = None
        for j in range(i, min(i + RESYNC_WORDS + 1, len(words) - n + 1)):
            if list(words[j:j + n]) == chunk_words:
                found = j
                break
        if found is None:
            if pending_start is None:
                pending_start = start
            pending_end = end
            continue
        settle(found)
        for k in range(found, found + n):
            placed[k] = (start, end)
        i = unassigned_from = found + n
        pending_start = None
    settle(len(words))
    return placed


def _window_offsets(text: str, window: str) -> list[int] | None:
    """For a truncated comment: the original index of every character of its window, or None."""
    mapping: list[int] = []
    pos = 0
    for k, part in enumerate(window.split(SEPARATOR)):
        where = text.find(part, pos)
        if where < 0:
            return None
        mapping.extend(range(where, where + len(part)))
        pos = where + len(part)
        if k < window.count(SEPARATOR):
            mapping.extend([-1] * len(SEPARATOR))
    return mapping if len(mapping) == len(window) else None


def word_spans(model: LoadedModel, text: str, label: str, *, window_chars: int = DEFAULT_WINDOW_CHARS) -> dict[str, Any]:
    """Word-level explanation of ``label`` for ``text`` (see the module docstring).

    Returns ``{"label", "intercept", "logit", "spans": [{"start", "end", "text", "words",
    "contribution"}], "unplaced": [{"word", "contribution"}]}``: spans in text order, one per
    stretch of the original, ``words`` the normalized words it stands for; ``intercept + sum of
    span and unplaced contributions == logit`` (checked; AssertionError otherwise, which would be
    a bug).
    """
    cleaned = clean_text(text)
    window = bounded_window(cleaned, window_chars)
    exp = model.explain(window.text, label, top=1 << 62)  # every n-gram, not only the top ones
    normalized = exp["normalized_text"]
    words = normalized.split(" ") if normalized else []
    shares, leftover = _word_shares(model, normalized, exp["top_ngrams"])
    base = window.text
    placed = _align(base, words)
    offsets = _window_offsets(cleaned, base) if window.truncated else None
    by_stretch: dict[tuple[int, int], dict[str, Any]] = {}
    unplaced: dict[str, float] = defaultdict(float)
    for word, share, where in zip(words, shares, placed):
        if where is not None and window.truncated:
            if offsets is None or offsets[where[0]] < 0 or offsets[where[1] - 1] < 0:
                where = None
            else:
                where = (offsets[where[0]], offsets[where[1] - 1] + 1)
        if where is None:
            unplaced[word] += share
            continue
        entry = by_stretch.setdefault(where, {"start": where[0], "end": where[1], "text": cleaned[where[0]:where[1]],
                                              "words": [], "contribution": 0.0})
        entry["words"].append(word)
        entry["contribution"] += share
    spans = sorted(by_stretch.values(), key=lambda s: (s["start"], s["end"]))
    out_unplaced = [{"word": w, "contribution": c} for w, c in unplaced.items()]
    if leftover:
        out_unplaced.append({"word": "", "contribution": leftover})
    total = exp["intercept"] + sum(s["contribution"] for s in spans) + sum(u["contribution"] for u in out_unplaced)
    if abs(total - exp["logit"]) > SUM_TOLERANCE * max(1.0, abs(exp["logit"])):
        raise AssertionError(f"word contributions do not add up to the logit ({total!r} != {exp['logit']!r})")
    return {"label": label, "intercept": exp["intercept"], "logit": exp["logit"], "spans": spans,
            "unplaced": out_unplaced}


def segments(text: str, spans: Sequence[dict[str, Any]]) -> list[tuple[str, dict[str, Any] | None]]:
    """``text`` cut into consecutive pieces, each with the span it is (or None): for rendering
    highlighted text without building HTML from the comment (the template escapes each piece)."""
    out: list[tuple[str, dict[str, Any] | None]] = []
    pos = 0
    for span in sorted(spans, key=lambda s: s["start"]):
        start, end = span["start"], span["end"]
        if start < pos:  # overlapping stretches cannot happen (one per original stretch); stay safe
            continue
        if start > pos:
            out.append((text[pos:start], None))
        out.append((text[start:end], span))
        pos = end
    if pos < len(text):
        out.append((text[pos:], None))
    return out
