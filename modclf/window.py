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

from .text import domain_spans, prenormalize

#: Link and contact cues worth keeping from the middle of an over-long comment. Deliberately broad:
#: a false cue only spends some of the window on ordinary text.
_CUE = re.compile(
    r"https?\s*:|www\s*\.|\bw\s*w\s*w\b|\.\s*(?:com|net|org|info|biz|io|co|me|ly|tv|ru|xyz|site|club|shop|top|link|gg)\b|"
    r"\b(?:dot|d0t)\s*(?:com|net|org|ru|io)\b|\[\s*(?:\.|dot)\s*\]|\(\s*(?:\.|dot)\s*\)|"
    r"\bt\s*\.\s*me\b|\bbit\s*\.?\s*ly\b|whats\s*app|telegram|\bwa\s*\.\s*me\b|"
    r"\b(?:subscribe|channel|promo|discount|bitcoin|crypto|forex|casino|download)\b|"
    r"[\w.+-]@[\w-]|\+\d[\d\s().\u2022\u00b7_/|-]{7,}\d|\+?\d[\d\s().\u2022\u00b7_-]{7,}\d",
    re.IGNORECASE,
)
#: What :func:`cue_stretches` reads apart: links and contacts, and self-promotion without a link
#: ("sub to me, I sub back", "search my name on YouTube", "follow @handle on insta", "my account
#: manager", a phone number in words), but not a sentence that merely says "channel" or "download"
#: (ordinary talk under a video far more often than a plug). Several patterns instead of one
#: alternation, each led by what it must start with: the single alternation of all of them cost
#: ~300 us a comment, as much as scoring it; these ~20.
_STRETCH_CUE_PATTERNS = (
    # led by a literal: fast to scan
    r"https?\s*:|www\s*\.|\.\s*(?:com|net|org|info|biz|io|co|me|ly|tv|ru|xyz|site|club|shop|top|link|gg)\b|"
    r"\[\s*(?:\.|dot)\s*\]|\(\s*(?:\.|dot)\s*\)|whats\s*app|telegram|"
    # the markers normalization puts for links, e-mails, phone numbers and handles (cue_readings)
    r"zz(?:url|shorturl|email|phone|mention)\b",
    # led by a word boundary, then one alternation of words; written as "no word character before"
    # (every alternative starts with one, so it is the same as \b), which re tries ~1.6x faster
    r"(?<!\w)(?:w\s*w\s*w\b|(?:dot|d0t)\s*(?:com|net|org|ru|io)\b|t\s*\.\s*me\b|bit\s*\.?\s*ly\b|wa\s*\.\s*me\b|"
    r"sub(?:scribe)?\s*(?:to|2)\s*(?:me|my)\b|sub\s*(?:4|for)\s*sub\b|subs?\s*back\b|"
    r"(?:follow|add|dm|message|text|call|contact|email|e-mail|ring|whatsapp|inbox)\s+me\b|check\s*out\s*my\b|"
    r"my\s+(?:channel|page|insta\w*|ig|tiktok|tik\s*tok|youtube|yt|profile|bio|blog|site|website|store|shop|"
    r"link|videos?|music|mixtape|sound\s*cloud|spotify|podcast|stream|twitch)\b|search\s+(?:for\s+)?my\s+name\b|"
    r"account\s+manager\b|(?:on|at|via)\s+(?:insta\w*|ig|tiktok|snap\w*|onlyfans|telegram|whats\s*app|kik|spotify|"
    r"sound\s*cloud|apple\s+music|bandcamp|patreon|twitch)\b|"
    r"(?:zero|oh|one|two|three|four|five|six|seven|eight|nine)(?:[\s,.-]+(?:zero|oh|one|two|three|four|five|six|"
    r"seven|eight|nine)){5,}\b|"
    # messaging apps: named with a handle or a colon, or the ones ordinary talk rarely names
    r"(?:signal|wechat|we\s*chat|viber|threema|line|session|tele|kik|insta\w*|ig|snap\w*|tiktok|whats\s*app|telegram)"
    r"\s*(?:id\s*)?[:=]|wechat|we\s*chat|viber|threema|the\s+gram\b|blue\s+app\b|"
    r"(?:ig|insta|snap|tele|tiktok|signal|line\s*id|session\s*id)\s+@?[a-z][a-z0-9_.]*\d|session\s*id\b|"
    r"my\s+(?:tele\w*|wechat|viber|kik|snap\w*|insta\w*|ig|whats\s*app|discord|skype)\s+(?:id\s+)?is\b|"
    r"my\s+(?:signal|session|line)\s+(?:id\s+)?is\s+@?[a-z0-9_.]*[\d_]|"  # a handle, not "my signal is weak"
    # misspelled or other apps, a subreddit
    r"tele\W{0,2}gr?a?m|whats?\W{0,2}s?\W?app?\b|wasap|discord|kakao\w*|skype\s*[:=]|r/[a-z0-9_]{3,}|"
    # "look up <name> on YT", a vanity number
    r"(?:look|search|find)\s+(?:me\s+|us\s+)?(?:up\s+)?[^.!?\n]{1,40}?\s+on\s+(?:yt|youtube|spotify|insta\w*|ig|"
    r"tiktok|sound\s*cloud|twitch|apple\s+music)\b|1-?8(?:00|88|77|66|55|44|33)-[a-z0-9]{3,}-[a-z0-9]{2,})",
)
#: the patterns for lower-cased text (case-insensitive matching is ~4x slower), and for the rare text
#: whose lower-casing changes its length (then positions would not carry over)
_STRETCH_CUES = tuple(re.compile(p) for p in _STRETCH_CUE_PATTERNS)
_STRETCH_CUES_ANY_CASE = tuple(re.compile(p, re.IGNORECASE) for p in _STRETCH_CUE_PATTERNS)
#: e-mail addresses and @handles, looked for only in a text with an "@"
_AT_CUE = re.compile(r"[\w.+-]@[\w-]|(?<![\w.])@[a-z_][\w.]{2,}", re.IGNORECASE)
#: phone numbers, looked for only in a text with 8 digits or more
_PHONE_CUE = re.compile(r"\+\d[\d\s().\u2022\u00b7_/|-]{7,}\d|\+?\d[\d\s().\u2022\u00b7_-]{7,}\d|"
                        # groups of digits between any symbols or "plus"/"then" ("555 ~ 010 ~ 9999")
                        r"\d{2,}(?:\s*(?:[^\w\s]{1,3}|plus|then|dash)\s*\d{2,}){2,}")
_DIGITS = str.maketrans("", "", "0123456789")
#: An HTML anchor: its target is dropped with the tag when the text is normalized, so a link drop
#: behind innocent anchor text ("<a href=...>cheap loans</a>") is read as the anchor text and the URL.
_ANCHOR = re.compile(r"<\s*a\b[^<>]{0,300}?\bhref\s*=\s*[\"']?([^\"'\s<>]{1,500})[^<>]{0,300}>(.{0,300}?)<\s*/\s*a\s*>",
                     re.IGNORECASE | re.DOTALL)


def _stretch_cues(text: str) -> list[tuple[int, int]]:
    """(start, end) of every cue of _STRETCH_CUES, _AT_CUE and _PHONE_CUE in ``text``, in order."""
    low = text.lower()
    if len(low) == len(text):
        spans = [m.span() for pattern in _STRETCH_CUES for m in pattern.finditer(low)]
    else:
        spans = [m.span() for pattern in _STRETCH_CUES_ANY_CASE for m in pattern.finditer(text)]
    if "@" in text:
        spans += [m.span() for m in _AT_CUE.finditer(text)]
    if len(text) - len(text.translate(_DIGITS)) >= 8:
        spans += [m.span() for m in _PHONE_CUE.finditer(text)]
    spans += domain_spans(text)  # the bare domains the link patterns above do not list ("syriamp3.to")
    return sorted(spans)
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
    """:func:`cue_spans` without the overflow flag."""
    return cue_spans(text, limit)[0]


def cue_spans(text: str, limit: int = 64) -> tuple[list[str], bool]:
    """The sentences of ``text`` that carry a link, a contact or a plug, each cut to ``CUE_CONTEXT``
    characters on either side of its cue, then the same cut to ``TIGHT_CONTEXT`` (whole words);
    at most ``limit``, overlapping ones merged, none twice.

    A text that is nothing but its stretch gives none (it is read whole anyway). Every HTML anchor
    also gives its text and its target (normalization drops the target with the tag). What these are for:
    a link drop appended to an ordinary comment is diluted by the comment's own words when the
    comment is read whole (TF-IDF rows are l2-normalized), and reads as what it is on its own.
    """
    out: list[str] = []
    cues = _stretch_cues(text)
    overflow = len(cues) > limit  # more cues than are read: the unread ones could be the plug
    for context in (CUE_CONTEXT, TIGHT_CONTEXT):
        spans: list[list[int]] = []
        for cue_start, cue_end in cues:
            lo, hi = max(0, cue_start - context), min(len(text), cue_end + context)
            if context == TIGHT_CONTEXT:  # whole words only
                lo = _word_start(text, lo, cue_start)
                hi = _word_end(text, hi, cue_end)
            start = lo
            for end_mark in _SENTENCE_END.finditer(text, lo, cue_start):
                start = end_mark.end()
            stop = hi
            end_mark = _SENTENCE_END.search(text, cue_end, hi)
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
    return out, overflow


class CueReadings(NamedTuple):
    """What :func:`cue_readings` found: the stretches to read, and whether there were more cues than
    ``limit`` (then the comment is held: 64 dates that look like phone numbers pushed a link past
    the last stretch read)."""

    stretches: list[str]
    overflow: bool


def cue_readings(text: str, limit: int = 64) -> CueReadings:
    """What :meth:`modclf.moderator.Moderator.decide` reads apart from a comment about to be
    approved: :func:`cue_stretches` of the comment, then of its normalized form
    (:func:`modclf.text.prenormalize`), where every disguised link, e-mail, phone number and handle
    has become a marker ("ｓｙｒｉａｍｐ３．ｃｏｍ", "c\u200bom", "%2Ecom", "syriamp3 punto com", a
    line break before ".com": none of them matches a cue in the raw text). At most ``limit``; a
    normalized stretch that is only the normalization of a raw one is not read twice."""
    out, overflow = cue_spans(text, limit)
    if len(out) >= limit:
        return CueReadings(out, True)
    folded = prenormalize(text)
    if folded == text.lower():  # most comments: normalization changed nothing a cue could be in
        return CueReadings(out, overflow)
    seen = {" ".join(prenormalize(stretch).split()) for stretch in out}
    folded_out, folded_overflow = cue_spans(folded, limit)
    for stretch in folded_out:
        if len(out) >= limit:
            return CueReadings(out, True)
        key = " ".join(stretch.split())
        if key not in seen:
            seen.add(key)
            out.append(key)
    return CueReadings(out, overflow or folded_overflow)
