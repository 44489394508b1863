"""The bounded window a long comment is classified on.

A comment longer than the model's window is not refused (a refusal is read by Coral and by most
Akismet clients as "no opinion", which publishes the comment): it is classified on a window of at
most ``limit`` characters and reported as ``truncated``, and the moderation policy never
auto-approves a truncated comment (``floors: truncated`` in policy.yaml).

The window is the head and the tail of the comment plus every stretch of the middle that carries a
link or contact cue, because the classic way past a length limit is a link drop buried in the
middle of a long benign text.
"""

from __future__ import annotations

import re
from typing import NamedTuple

#: Link and contact cues worth keeping from the middle of an over-long comment. Deliberately broad:
#: a false cue only spends some of the window on ordinary text.
_LINK_CUES = (
    r"https?\s*:|www\s*\.|\bw\s*w\s*w\b|\.\s*(?:com|net|org|info|biz|io|co|me|ly|tv|ru|xyz|site|club|shop|top|link|gg)\b|"
    r"\b(?:dot|d0t)\s*(?:com|net|org|ru|io)\b|\[\s*(?:\.|dot)\s*\]|\(\s*(?:\.|dot)\s*\)|"
    r"\bt\s*\.\s*me\b|\bbit\s*\.?\s*ly\b|whats\s*app|telegram|\bwa\s*\.\s*me\b|"
    r"[\w.+-]@[\w-]|\+?\d[\d\s().-]{7,}\d"
)
_CUE = re.compile(_LINK_CUES + r"|\b(?:subscribe|channel|promo|discount|bitcoin|crypto|forex|casino|download)\b",
                  re.IGNORECASE)
#: Self-promotion without a link, in words: "sub to me, I sub back", "search my name on YouTube",
#: "follow @handle on insta", "my account manager", a phone number spelled out in words.
_PROMO_CUES = (
    r"\bsub(?:scribe)?\s*(?:to|2)\s*(?:me|my)\b|\bsub\s*(?:4|for)\s*sub\b|\bsubs?\s*back\b|"
    r"\b(?:follow|add|dm|message|text|call|contact|email|e-mail|ring|whatsapp|inbox)\s+me\b|\bcheck\s*out\s*my\b|"
    r"\bmy\s+(?:channel|page|insta\w*|ig|tiktok|tik\s*tok|youtube|yt|profile|bio|blog|site|website|store|shop|"
    r"link|videos?|music|mixtape|sound\s*cloud|spotify|podcast|stream|twitch)\b|\bsearch\s+(?:for\s+)?my\s+name\b|"
    r"\baccount\s+manager\b|\b(?:on|at|via)\s+(?:insta\w*|ig|tiktok|snap\w*|onlyfans|telegram|whats\s*app|kik)\b|"
    r"(?<![\w.])@[a-z_][\w.]{2,}|"
    r"\b(?:zero|oh|one|two|three|four|five|six|seven|eight|nine)(?:[\s,.-]+(?:zero|oh|one|two|three|four|five|six|seven|"
    r"eight|nine)){5,}\b"
)
#: Links, contacts and self-promotion: what :func:`cue_stretches` reads apart (a sentence that merely
#: says "channel" or "download" is ordinary talk under a video far more often than a plug).
_LINK_CUE = re.compile(_LINK_CUES + "|" + _PROMO_CUES, re.IGNORECASE)
#: An HTML anchor: its target is dropped with the tag when the text is normalized, so a link drop
#: behind innocent anchor text ("<a href=...>cheap loans</a>") is read as the anchor text and the URL.
_ANCHOR = re.compile(r"<\s*a\b[^<>]{0,300}?\bhref\s*=\s*[\"']?([^\"'\s<>]{1,500})[^<>]{0,300}>(.{0,300}?)<\s*/\s*a\s*>",
                     re.IGNORECASE | re.DOTALL)
_INNER_TAG = re.compile(r"<[^<>]{0,300}>")
#: Characters kept on each side of a cue.
CUE_CONTEXT = 80
#: ... and for a second, tighter reading of each cue (a plug put in the middle of a long sentence is
#: diluted by the sentence's own words within CUE_CONTEXT).
TIGHT_CONTEXT = 30
SEPARATOR = "\n...\n"


#: A sentence ends at a line break or at ".", "!" or "?" followed by white space ("site.com" does not end one).
_SENTENCE_END = re.compile(r"\n|[.!?](?=\s)")


class Window(NamedTuple):
    text: str
    truncated: bool


def bounded_window(text: str, limit: int) -> Window:
    """``text`` itself when it has at most ``limit`` characters, else head + cue stretches + tail.

    The result never exceeds ``limit`` characters (separators included) and is deterministic.
    Budget: 40% head, 20% tail, the rest for cue stretches of the middle in order of appearance
    (unused cue budget goes to the head).
    """
    if len(text) <= limit:
        return Window(text, False)
    sep = len(SEPARATOR)
    usable = max(limit - 2 * sep, 3)
    head_n, tail_n = usable * 2 // 5, usable // 5
    cue_budget = usable - head_n - tail_n
    middle_start, middle_end = head_n, len(text) - tail_n
    spans: list[tuple[int, int]] = []
    used = 0
    for match in _CUE.finditer(text, middle_start, middle_end):
        start = max(middle_start, match.start() - CUE_CONTEXT)
        end = min(middle_end, match.end() + CUE_CONTEXT)
        if spans and start <= spans[-1][1]:
            start = spans[-1][1]
            if end <= start:
                continue
            room = cue_budget - used
            end = min(end, start + room)
            spans[-1] = (spans[-1][0], end)
        else:
            room = cue_budget - used - sep
            if room <= 0:
                break
            end = min(end, start + room)
            spans.append((start, end))
            used += sep
        used += end - start
        if used >= cue_budget:
            break
    head_n += cue_budget - used  # give what the cues did not need to the head
    parts = [text[:head_n]]
    for start, end in spans:
        if start < head_n:
            start = head_n
        if end > start:
            parts.append(text[start:end])
    parts.append(text[len(text) - tail_n:])
    window = SEPARATOR.join(parts)
    return Window(window[:limit], True)


def _word_start(text: str, lo: int, limit: int) -> int:
    """``lo`` moved forward past a partial word (never beyond ``limit``)."""
    if lo == 0 or text[lo - 1].isspace():
        return lo
    space = text.find(" ", lo, limit)
    return limit if space < 0 else space + 1


def _word_end(text: str, hi: int, limit: int) -> int:
    """``hi`` moved back before a partial word (never before ``limit``)."""
    if hi >= len(text) or text[hi].isspace():
        return hi
    space = text.rfind(" ", limit, hi)
    return limit if space < 0 else space


def cue_stretches(text: str, limit: int = 64) -> list[str]:
    """The sentences of ``text`` that carry a link, a contact or a plug, each cut to ``CUE_CONTEXT``
    characters on either side of its cue, then the same cut to ``TIGHT_CONTEXT`` (whole words);
    at most ``limit``, overlapping ones merged, none twice.

    A text that is nothing but its stretch gives none (it is read whole anyway). Every HTML anchor
    also gives its text and its target (normalization drops the target with the tag). What these are for:
    a link drop appended to an ordinary comment is diluted by the comment's own words when the
    comment is read whole (TF-IDF rows are l2-normalized), and reads as what it is on its own.
    """
    out: list[str] = []
    for context in (CUE_CONTEXT, TIGHT_CONTEXT):
        spans: list[list[int]] = []
        for match in _LINK_CUE.finditer(text):
            lo, hi = max(0, match.start() - context), min(len(text), match.end() + context)
            if context == TIGHT_CONTEXT:  # whole words only
                lo = _word_start(text, lo, match.start())
                hi = _word_end(text, hi, match.end())
            start = lo
            for end_mark in _SENTENCE_END.finditer(text, lo, match.start()):
                start = end_mark.end()
            stop = hi
            end_mark = _SENTENCE_END.search(text, match.end(), hi)
            if end_mark is not None:
                stop = end_mark.end()
            if spans and start < spans[-1][1]:  # overlapping (not merely adjacent) stretches merge
                spans[-1][1] = max(spans[-1][1], stop)
            elif len(spans) < limit:
                spans.append([start, stop])
            else:
                break
        for start, stop in spans:
            stretch = text[start:stop].strip()
            if stretch and len(stretch) < len(text.strip()) and stretch not in out and len(out) < limit:
                out.append(stretch)
    if "<" in text:
        for anchor in _ANCHOR.finditer(text):
            if len(out) >= limit:
                break
            out.append(" ".join(f"{_INNER_TAG.sub(' ', anchor.group(2))} {anchor.group(1)}".split()))
    return out
