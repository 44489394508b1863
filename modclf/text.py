"""Text normalization: the one place raw comment text is cleaned before feature extraction.

Comments arrive with HTML leftovers, links in every disguise, contact details and stretched
letters. Mapping those to a few marker tokens lets a linear model learn "has a link" once instead
of once per domain, which is what generalizes from our corpus to comments we have never seen.
"""

from __future__ import annotations

import html
import re
import unicodedata

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
_PHONE = re.compile(r"(?<![\w])\+?\d[\d\s().-]{7,}\d(?![\w])")
_MENTION = re.compile(r"(?<![\w@])@[\w.]{2,}")
_REPEAT = re.compile(r"(.)\1{2,}", re.DOTALL)


_ASCII_UPPER = bytes(range(65, 91))
_ASCII_NOT_UPPER = bytes(b for b in range(256) if b not in _ASCII_UPPER)
_ASCII_NOT_ALPHA = bytes(b for b in range(256) if not (65 <= b <= 90 or 97 <= b <= 122))
# zero-width characters and byte-order marks (video-site comments often end with U+FEFF)
_INVISIBLE = str.maketrans("", "", "\u200b\u200c\u200d\u200e\u200f\u2060\ufeff")
_DIGITS = str.maketrans("", "", "0123456789")
# Cheap gate before the link patterns, which are the slowest part of normalization.
_LINK_HINT = re.compile(r"https?|www|\.[a-z]{2}|dot|bit\W*ly|\[|link|tinyurl|t\.co|is\.gd|\.\s*ly")


def _mostly_caps(text: str) -> bool:
    if text.isascii():
        raw = text.encode("ascii")
        letters = len(raw.translate(None, _ASCII_NOT_ALPHA))
        upper = len(raw.translate(None, _ASCII_NOT_UPPER))
    else:
        letters = sum(map(str.isalpha, text))
        upper = sum(map(str.isupper, text))
    return letters >= 8 and upper / letters > 0.7


def normalize_text(text: str) -> str:
    """Return the normalized form of one comment (lower-cased, markers substituted).

    Deterministic, never raises on any ``str``; whitespace in the result is single spaces with
    none at either end (the fast inference path relies on that). The cheap ``in`` tests skip
    patterns that cannot match: this function is on the hot path of every prediction.
    """
    if "&" in text:
        text = html.unescape(text)
    if "<" in text:
        text = _TAG.sub(" ", text)
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text).translate(_INVISIBLE)
    caps = _mostly_caps(text)
    text = text.lower()
    if "@" in text or "(at)" in text or "[at]" in text:
        text = _EMAIL.sub(EMAIL_TOKEN, text)
    if _LINK_HINT.search(text):
        text = _SHORTENER.sub(SHORT_URL_TOKEN, text)
        text = _URL.sub(URL_TOKEN, text)
        text = _OBFUSCATED.sub(URL_TOKEN, text)
    if len(text) - len(text.translate(_DIGITS)) >= 8:
        text = _PHONE.sub(PHONE_TOKEN, text)
    if "@" in text:
        text = _MENTION.sub(MENTION_TOKEN, text)
    text = _REPEAT.sub(r"\1\1", text)
    if caps:
        text += CAPS_TOKEN
    return " ".join(text.split())


_NON_WORD = re.compile(r"[\W_]+")


def dedup_key(text: str) -> str:
    """Key under which two comments count as the same text (case, spacing, punctuation ignored)."""
    return _NON_WORD.sub("", normalize_text(text))
