"""Disguised variants of spam comments: the adversarial test set for evasion.

Spammers disguise the same link drop so that a filter reading characters does not recognize it:
look-alike letters from other scripts, fullwidth and mathematical letters, invisible characters
between letters, combining marks over letters, letters spaced out or split by punctuation, "dot"
written out, and the link buried in a long benign comment. :func:`disguise` produces one variant
of one comment per kind; :func:`variants` a whole deterministic set (``seed`` plus the row and the
kind decide every random choice, so a subset of rows gives the same variants as the full set).

Generated variants are for tests and ``bench/evasion_report.py`` only, never training data.
"""

from __future__ import annotations

import hashlib
import html
import random
import re
import unicodedata
from typing import Iterator, NamedTuple, Sequence

#: Disguise kinds, in report order.
KINDS: tuple[str, ...] = (
    "homoglyph", "fullwidth", "math_alnum", "enclosed", "invisible", "combining", "spaced", "punct_split",
    "dot_words", "padding", "combo",
)

#: Latin letter -> look-alikes (Cyrillic, Greek, Armenian, Latin-script oddities, Roman numerals,
#: letterlike symbols), as listed for these letters in Unicode's confusables data.
HOMOGLYPHS: dict[str, str] = {
    "a": "аαɑ", "b": "ьЬ", "c": "сϲⅽᴄ", "d": "ԁⅾ", "e": "еҽℯ", "g": "ɡց", "h": "һհℎ", "i": "іιɩıⅰ", "j": "јϳ",
    "k": "κк", "l": "ӏⅼ", "m": "мⅿ", "n": "ոη", "o": "оοօ", "p": "рρ", "q": "ԛ", "r": "г", "s": "ѕꜱ", "t": "τ",
    "u": "υս", "v": "νѵⅴ", "w": "ԝω", "x": "хχⅹ", "y": "уγү", "z": "ᴢ",
    "A": "АΑ", "B": "ВΒ", "C": "СϹⅭ", "D": "Ⅾ", "E": "ЕΕ", "H": "НΗ", "I": "ІΙⅠӀ", "J": "Ј", "K": "КΚ",
    "M": "МΜⅯ", "N": "Ν", "O": "ОΟՕ", "P": "РΡ", "S": "Ѕ", "T": "ТΤ", "X": "ХΧ", "Y": "ҮΥ", "Z": "Ζ",
}

_MATH_STYLES = ("BOLD", "ITALIC", "BOLD ITALIC", "SCRIPT", "BOLD SCRIPT", "FRAKTUR", "DOUBLE-STRUCK",
                "BOLD FRAKTUR", "SANS-SERIF", "SANS-SERIF BOLD", "SANS-SERIF ITALIC", "SANS-SERIF BOLD ITALIC",
                "MONOSPACE")
_DIGIT_NAMES = ("ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE")

#: Characters that render as nothing (or nearly), inserted inside words: zero-width space/joiners,
#: direction marks and isolates, word joiner, invisible operators, BOM, soft hyphen, combining
#: grapheme joiner, Mongolian vowel separator, variation selectors, Arabic letter mark.
INVISIBLES: tuple[str, ...] = (
    "\u200b", "\u200c", "\u200d", "\u200e", "\u200f", "\u2060", "\u2061", "\u2062", "\u2063", "\u2064", "\ufeff",
    "\u00ad", "\u034f", "\u180e", "\ufe0f", "\ufe00", "\ufe0e", "\u061c", "\u2066", "\u2069", "\u202a", "\u202c",
    "\U000e0100",
)
#: Tag characters (U+E0020..U+E007E): invisible copies of ASCII, also inserted.
_TAGS = tuple(chr(c) for c in range(0xE0020, 0xE007F))

_COMBINING = tuple(chr(c) for c in range(0x0300, 0x0370)) + tuple(chr(c) for c in range(0x1AB0, 0x1ABE)) + \
    tuple(chr(c) for c in range(0x1DC0, 0x1DCB)) + tuple(chr(c) for c in range(0x20D0, 0x20DD))

_TLDS = ("com|net|org|info|biz|io|co|me|ly|tv|us|uk|ru|de|fr|in|xyz|online|site|club|shop|store|top|app|gg|link|"
         "live|be|to|cc|pw|tk|ml|ga|cf|su|eu|ws|fm")
#: Link-like tokens (URLs, www., bare domains) in the original comment.
LINK = re.compile(rf"(?i)(?:https?://\S+|\bwww\.\S+|\b[\w-]+(?:\.[\w-]+)*\.(?:{_TLDS})\b(?:/\S*)?)")
_WORD = re.compile(r"[^\W_]{3,}")
_TOKEN = re.compile(r"\S+")

_DOT_STYLES = (" dot ", " (dot) ", "(.)", "[.]", " [dot] ", "{dot}", " DOT ", "(dot)", " [.] ", "(.)")
_SPLITTERS = ("-", ".", "_", "*", "|", "·", "•", "~", "+")


class Variant(NamedTuple):
    kind: str
    row: int  #: index of the original in the ``spam`` sequence given to :func:`variants`
    original: str
    text: str


def _rng(seed: int, kind: str, row: int) -> random.Random:
    digest = hashlib.sha256(f"{seed}:{kind}:{row}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


def _math_char(style: str, ch: str) -> str:
    if ch.isdigit() and ch.isascii():
        name = f"MATHEMATICAL {style} DIGIT {_DIGIT_NAMES[int(ch)]}"
    elif ch.isascii() and ch.isalpha():
        name = f"MATHEMATICAL {style} {'CAPITAL' if ch.isupper() else 'SMALL'} {ch.upper()}"
    else:
        return ch
    try:
        return unicodedata.lookup(name)
    except KeyError:  # holes of the block (e.g. italic h is U+210E) and styles without digits
        return ch


def _enclosed_char(style: str, ch: str) -> str:
    if not (ch.isascii() and ch.isalnum()):
        return ch
    if ch.isdigit():
        return {"circled": "⓪①②③④⑤⑥⑦⑧⑨", "negative_circled": "⓿❶❷❸❹❺❻❼❽❾",
                "squared": "⓪①②③④⑤⑥⑦⑧⑨", "negative_squared": "⓿➊➋➌➍➎➏➐➑➒"}[style][int(ch)]
    i = ord(ch.lower()) - 97
    return {"circled": chr(0x24D0 + i) if ch.islower() else chr(0x24B6 + i), "squared": chr(0x1F130 + i),
            "negative_circled": chr(0x1F150 + i), "negative_squared": chr(0x1F170 + i)}[style]


def _insert_between(text: str, rng: random.Random, pick, p: float) -> str:  # type: ignore[no-untyped-def]
    """``pick()`` inserted with probability ``p`` between two adjacent non-space characters."""
    out = []
    for i, ch in enumerate(text):
        out.append(ch)
        if i + 1 < len(text) and not ch.isspace() and not text[i + 1].isspace() and rng.random() < p:
            out.append(pick())
    return "".join(out)


def _targets(text: str, rng: random.Random, p: float) -> list[tuple[int, int, bool]]:
    """Spans to spell out: every link token, and words of 3+ letters with probability ``p`` (at least 2)."""
    links = [(m.start(), m.end(), True) for m in LINK.finditer(text)]
    taken = [(a, b) for a, b, _ in links]
    words = [(m.start(), m.end(), False) for m in _WORD.finditer(text)
             if not any(a <= m.start() < b for a, b in taken)]
    chosen = [w for w in words if rng.random() < p]
    if len(chosen) + len(links) < 2:
        rest = [w for w in words if w not in chosen]
        chosen += rng.sample(rest, min(len(rest), 2 - len(chosen) - len(links)))
    return sorted(links + chosen)


def _spell(token: str, sep: str, link: bool) -> str:
    """Letters and digits of ``token`` joined by ``sep``; other characters kept (spaced when ``sep`` is a space)."""
    parts = re.findall(r"[^\W_]|[\W_]+", token)
    out = []
    for i, part in enumerate(parts):
        if i:
            prev_alnum = parts[i - 1][0].isalnum() and parts[i - 1][0] != "_"
            cur_alnum = part[0].isalnum() and part[0] != "_"
            if prev_alnum and cur_alnum:
                out.append(sep)
            elif sep == " ":
                out.append(" ")
        out.append(part)
    return "".join(out)


def _spelled(text: str, rng: random.Random, sep_choice: Sequence[str]) -> str:
    sep = rng.choice(sep_choice)
    out, last, prev_end = [], 0, -10
    for a, b, link in _targets(text, rng, 0.4):
        gap = text[last:a]
        if sep == " " and a - prev_end == 1 and gap == " ":
            gap = "  "  # two spelled words in a row: a wider gap between them, as spammers write it
        out.append(gap)
        token_sep = "-" if link and sep in (".", "/") else sep
        out.append(_spell(text[a:b], token_sep, link))
        last, prev_end = b, b
    out.append(text[last:])
    return "".join(out)


def _dot_words(text: str, rng: random.Random) -> str | None:
    links = list(LINK.finditer(text))
    if not any(re.search(r"[^\W_]\.[^\W_]", m.group()) for m in links):
        return None
    style = rng.choice(_DOT_STYLES)
    out, last = [], 0
    for m in links:
        out.append(text[last:m.start()])
        link = re.sub(r"^https?://", "", m.group(), flags=re.I) if rng.random() < 0.5 else m.group()
        out.append(re.sub(r"(?<=[^\W_])\.(?=[^\W_])", style, link))
        last = m.end()
    out.append(text[last:])
    return "".join(out)


def _padding(text: str, rng: random.Random, benign: Sequence[str], low: int, high: int) -> str:
    """``text`` at a random place among benign comments, ``low``..``high`` characters in all."""
    target = rng.randint(low, high)
    pads: list[str] = []
    total = len(text)
    misses = 0
    while total < target and misses < 50:
        pad = benign[rng.randrange(len(benign))]
        if total + 2 + len(pad) > high:
            misses += 1
            continue
        pads.append(pad)
        total += len(pad) + 2
    pads.insert(rng.randint(0, len(pads)), text)
    out = pads[0]
    for pad in pads[1:]:  # paragraphs, lines, or one run-on paragraph: the link is not always set apart
        out += rng.choice(("\n\n", "\n", " ")) + pad
    return out


def long_benign(benign: Sequence[str], count: int, seed: int = 0, low: int = 1000, high: int = 9000) -> list[str]:
    """``count`` long comments made of benign ones only, as the padding kind builds them (a control)."""
    out = []
    for i in range(count):
        rng = _rng(seed, "long_benign", i)
        first = benign[rng.randrange(len(benign))]
        out.append(_padding(first, rng, benign, low, high))
    return out


def disguise(text: str, kind: str, rng: random.Random, benign: Sequence[str] = (),
             padding: tuple[int, int] = (1000, 9000)) -> str | None:
    """One disguised variant of ``text``; None when the kind does not apply (no link to rewrite)."""
    if kind == "homoglyph":
        return "".join(rng.choice(HOMOGLYPHS[c]) if c in HOMOGLYPHS and rng.random() < 0.6 else c for c in text)
    if kind == "fullwidth":
        return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else ("\u3000" if c == " " and rng.random() < 0.3 else c)
                       for c in text)
    if kind == "math_alnum":
        style = rng.choice(_MATH_STYLES)
        return "".join(_math_char(style, c) for c in text)
    if kind == "enclosed":
        style = rng.choice(("circled", "squared", "negative_circled", "negative_squared"))
        return "".join(_enclosed_char(style, c) for c in text)
    if kind == "invisible":
        pool = INVISIBLES + _TAGS[:8]
        return _insert_between(text, rng, lambda: rng.choice(pool) * rng.choice((1, 1, 1, 2)), 0.5)
    if kind == "combining":
        return "".join(c + "".join(rng.choice(_COMBINING) for _ in range(rng.choice((1, 1, 2, 3))))
                       if c.isascii() and c.isalnum() and rng.random() < 0.5 else c for c in text)
    if kind == "spaced":
        return _spelled(text, rng, (" ",))
    if kind == "punct_split":
        return _spelled(text, rng, _SPLITTERS)
    if kind == "dot_words":
        return _dot_words(text, rng)
    if kind == "padding":
        if not benign:
            raise ValueError("padding needs benign comments")
        return _padding(text, rng, benign, *padding)
    if kind == "combo":  # several at once: spelled-out link and words, look-alikes, invisible characters
        spelled = _spelled(text, rng, (" ", "-", ".", "_"))
        glyphs = "".join(rng.choice(HOMOGLYPHS[c]) if c in HOMOGLYPHS and rng.random() < 0.4 else c for c in spelled)
        return _insert_between(glyphs, rng, lambda: rng.choice(INVISIBLES), 0.2)
    raise ValueError(f"unknown disguise kind {kind!r} (known: {', '.join(KINDS)})")


def variants(spam: Sequence[str], benign: Sequence[str] = (), kinds: Sequence[str] = KINDS, seed: int = 0,
             rows: Sequence[int] | None = None) -> Iterator[Variant]:
    """Variants of ``spam[i]`` for every kind and every ``i`` in ``rows`` (default: all), deterministic.

    HTML entities of the originals are decoded first (a spammer types the characters, not ``&#39;``);
    ``Variant.original`` is that decoded text.
    """
    for kind in kinds:
        for i in (range(len(spam)) if rows is None else rows):
            original = html.unescape(spam[i])
            text = disguise(original, kind, _rng(seed, kind, i), benign)
            if text is not None:
                yield Variant(kind, i, original, text)
