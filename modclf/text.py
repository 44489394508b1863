"""Text normalization: the one place raw comment text is cleaned before feature extraction.

Comments arrive with HTML leftovers, links in every disguise, contact details and stretched
letters. Mapping those to a few marker tokens lets a linear model learn "has a link" once instead
of once per domain, which is what generalizes from our corpus to comments we have never seen.
"""

from __future__ import annotations

import functools
import html
import re
import unicodedata

import numpy as np

from . import _kernels as K

URL_TOKEN = " zzurl "
SHORT_URL_TOKEN = " zzurl zzshorturl "
EMAIL_TOKEN = " zzemail "
PHONE_TOKEN = " zzphone "
MENTION_TOKEN = " zzmention "
CAPS_TOKEN = " zzcaps "

_TAG = re.compile(r"<\s*/?\s*[a-zA-Z][^<>]{0,200}>")
_SHORTENER = re.compile(
    r"\b(?:bit\s*\.?\s*ly|goo\s*\.?\s*gl|tinyurl|t\.co|ow\.ly|is\.gd|buff\.ly|cutt\.ly|rb\.gy|"
    r"shorturl\s*\.?\s*at|tiny\s*\.?\s*cc|adf\.ly|youtu\.be)\b(?:\s*/\s*\S+)?",
    
)
_URL = re.compile(
    r"(?:\bhttps?\s*:\s*/\s*/\s*\S+|\bwww\s*\.\s*\S+|"
    r"\b[\w-]+(?:\.[\w-]+)*\.(?:com|net|org|info|biz|io|co|me|ly|tv|us|uk|ru|de|fr|in|xyz|online|site|club|"
    r"shop|store|top|app|gg|link|live)\b(?:/\S*)?)",
    
)
# "www dot site dot com", "site [dot] com", "[Web Link]", "link in bio"
_OBFUSCATED = re.compile(
    r"\bw\s*w\s*w\s*(?:\.|\(dot\)|\[dot\]|\bdot\b)|"
    r"(?:\(|\[)?\s*\bdot\s*(?:\)|\])?\s*(?:com|net|org|info|co|ru|io)\b|"
    r"\[\s*web\s*link\s*\]|\blink\s+in\s+(?:my\s+)?(?:bio|profile|channel)\b",
    
)
_EMAIL = re.compile(r"\b[\w.+-]+\s*(?:@|\(at\)|\[at\])\s*[\w-]+\s*(?:\.|\bdot\b)\s*[a-z]{2,}\b")
# The middle of _EMAIL: every match contains a match of this. It starts with a literal, so re scans
# for it in C; _EMAIL itself backtracks through every word of a comment that has an @mention.
_EMAIL_HINT = re.compile(r"(?:@|\(at\)|\[at\])\s*[\w-]+\s*(?:\.|\bdot\b)")
# Phone numbers: r"(?<![\w])\+?\d[\d\s().-]{7,}\d(?![\w])", rewritten to match exactly the same
# strings with a character class first (consume [+\d], then check what came before it), so that re
# skips the positions that cannot start a match in C instead of trying the pattern at each of them.
_PHONE = re.compile(r"[+\d](?<![\w][+\d])(?:(?<=\+)\d|(?<=\d))[\d\s().-]{7,}\d(?![\w])")
_MENTION = re.compile(r"(?<![\w@])@[\w.]{2,}")
_REPEAT = re.compile(r"(.)\1{2,}", re.DOTALL)


_ASCII_UPPER = bytes(range(65, 91))
_ASCII_NOT_UPPER = bytes(b for b in range(256) if b not in _ASCII_UPPER)
_ASCII_NOT_ALPHA = bytes(b for b in range(256) if not (65 <= b <= 90 or 97 <= b <= 122))
# zero-width characters and byte-order marks (video-site comments often end with U+FEFF)
_INVISIBLE = str.maketrans("", "", "\u200b\u200c\u200d\u200e\u200f\u2060\ufeff")
_HAS_INVISIBLE = re.compile("[\u200b\u200c\u200d\u200e\u200f\u2060\ufeff]")  # str.translate is slow on non-ASCII
_NON_ASCII = bytes(range(128, 256))
# Cheap gate before the link patterns, which are the slowest part of normalization. It decides
# whether they run at all, so it is part of the definition of the output (it is not a pure
# optimization: "goo gl/x" has no hint). _has_link_hint below computes exactly the same predicate.
_LINK_HINT = re.compile(r"https?|www|\.[a-z]{2}|dot|bit\W*ly|\[|link|tinyurl|t\.co|is\.gd|\.\s*ly")
# The two parts of _LINK_HINT that need a regex ("t.co", "is.gd" and ".ly" imply "\.[a-z]{2}").
_DOT_HINT = re.compile(r"\.(?:[a-z]{2}|\s*ly)")
_BIT_HINT = re.compile(r"bit\W*ly")

#: Code points above this have none of the flags (checked for the whole range by the tests).
FLAG_TABLE_SIZE = 0x40000


@functools.cache
def char_flags() -> np.ndarray:
    """Per-code-point flags (SPACE, WORD, ALPHA, UPPER of modclf._kernels) from Python's own predicates.

    Built once per process (~0.2 s) so the compiled kernels agree exactly with str.split(), the
    regex ``\\w``, str.isalpha() and str.isupper().
    """
    chars = np.arange(FLAG_TABLE_SIZE, dtype=np.uint32).tobytes().decode("utf-32-le", "surrogatepass")
    flags = np.zeros(FLAG_TABLE_SIZE, dtype=np.uint8)
    for bit, predicate in ((K.SPACE, str.isspace), (K.ALPHA, str.isalpha), (K.UPPER, str.isupper),
                           (K.WORD, str.isalnum)):
        flags[np.fromiter(map(predicate, chars), dtype=bool, count=FLAG_TABLE_SIZE)] |= bit
    flags[ord("_")] |= K.WORD  # regex \w is str.isalnum() or "_" (the tests check every code point)
    flags.setflags(write=False)
    return flags


def _codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def _mostly_caps(text: str) -> bool:
    if text.isascii():
        raw = text.encode("ascii")
        letters = len(raw.translate(None, _ASCII_NOT_ALPHA))
        upper = len(raw.translate(None, _ASCII_NOT_UPPER))
    else:
        # Exact shortcut: ASCII letters are a lower bound of the letters, ASCII capitals plus all
        # non-ASCII characters an upper bound of the capitals; most texts are decided right here.
        raw = text.encode("utf-8", "surrogatepass")
        ascii_letters = len(raw.translate(None, _ASCII_NOT_ALPHA))
        upper_bound = len(raw.translate(None, _ASCII_NOT_UPPER)) + len(text) - len(raw.translate(None, _NON_ASCII))
        if ascii_letters and upper_bound / ascii_letters <= 0.7:
            return False
        letters, upper = K.count_letters(_codepoints(text), char_flags())
    return letters >= 8 and upper / letters > 0.7


def _has_link_hint(text: str) -> bool:
    """``bool(_LINK_HINT.search(text))``, with substring tests first (several times faster)."""
    return (
        "http" in text or "www" in text or "dot" in text or "[" in text or "link" in text or "tinyurl" in text
        or ("." in text and _DOT_HINT.search(text) is not None)
        or ("bit" in text and _BIT_HINT.search(text) is not None)
    )


def _count_digits(text: str) -> int:
    """Number of ASCII digits (UTF-8 never uses the bytes 0x30-0x39 inside another character)."""
    raw = text.encode("utf-8", "surrogatepass")
    return len(raw) - len(raw.translate(None, b"0123456789"))


# Exact necessary conditions for the link patterns to match: every match of _SHORTENER contains
# one of _SHORTENER_WORDS; every match of _URL contains "http", "www" or a _TLD_HINT match; every
# match of _OBFUSCATED contains "dot", or "[" and "link", or a _LINK_IN_HINT or _WWW_HINT match.
# They skip patterns that would change nothing (tests compare with the ungated substitutions).
_SHORTENER_WORDS = ("bit", "goo", "tiny", "t.co", "ow.ly", "is.gd", "buff.ly", "cutt.ly", "rb.gy", "shorturl",
                    "adf.ly", "youtu.be")
_TLD_HINT = re.compile(
    r"\.(?:com|net|org|info|biz|io|co|me|ly|tv|us|uk|ru|de|fr|in|xyz|online|site|club|shop|store|top|app|gg|link|live)\b"
)
_WWW_HINT = re.compile(r"w\s*w\s*w")
_LINK_IN_HINT = re.compile(r"link\s+in\s")


def _replace_links(text: str) -> str:
    if any(word in text for word in _SHORTENER_WORDS):
        text = _SHORTENER.sub(SHORT_URL_TOKEN, text)
    if "http" in text or "www" in text or ("." in text and _TLD_HINT.search(text) is not None):
        text = _URL.sub(URL_TOKEN, text)
    if "dot" in text or ("link" in text and ("[" in text or _LINK_IN_HINT.search(text) is not None)) \
            or ("w" in text and _WWW_HINT.search(text) is not None):
        text = _OBFUSCATED.sub(URL_TOKEN, text)
    return text


def prenormalize(text: str) -> str:
    """normalize_text without its last step (repeated characters cut to two, whitespace collapsed).

    The fast inference path does that last step itself, in compiled code, on a whole batch.
    """
    if "&" in text:
        text = html.unescape(text)
    if "<" in text:
        text = _TAG.sub(" ", text)
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
        if _HAS_INVISIBLE.search(text):
            text = text.translate(_INVISIBLE)
    caps = _mostly_caps(text)
    text = text.lower()
    if ("@" in text or "(at)" in text or "[at]" in text) and _EMAIL_HINT.search(text) is not None:
        text = _EMAIL.sub(EMAIL_TOKEN, text)
    if _has_link_hint(text):
        text = _replace_links(text)
    if _count_digits(text) >= 8:
        text = _PHONE.sub(PHONE_TOKEN, text)
    if "@" in text:
        text = _MENTION.sub(MENTION_TOKEN, text)
    # Appending before the last step is the same as after it: the token starts with a space, so
    # it can only lengthen a run of spaces, which the whitespace collapse removes anyway.
    return text + CAPS_TOKEN if caps else text


def finish(text: str) -> str:
    """The last step: ``" ".join(_REPEAT.sub(r"\\1\\1", text).split())``, compiled."""
    return K.finish_text(_codepoints(text), char_flags()).tobytes().decode("utf-32-le", "surrogatepass")


def normalize_text(text: str) -> str:
    """Return the normalized form of one comment (lower-cased, markers substituted).

    Deterministic, never raises on any ``str``; whitespace in the result is single spaces with
    none at either end (the fast inference path relies on that). The cheap ``in`` tests skip
    patterns that cannot match: this function is on the hot path of every prediction. Its output
    is pinned by tests against the original all-regex implementation.
    """
    return finish(prenormalize(text))


_NON_WORD = re.compile(r"[\W_]+")


def dedup_key(text: str) -> str:
    """Key under which two comments count as the same text (case, spacing, punctuation ignored)."""
    return _NON_WORD.sub("", normalize_text(text))
