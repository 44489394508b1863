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
    re.IGNORECASE,
)
_URL = re.compile(
    r"(?:\bhttps?\s*:\s*/\s*/\s*\S+|\bwww\s*\.\s*\S+|"
    r"\b[\w-]+(?:\.[\w-]+)*\.(?:com|net|org|info|biz|io|co|me|ly|tv|us|uk|ru|de|fr|in|xyz|online|site|club|"
    r"shop|store|top|app|gg|link|live)\b(?:/\S*)?)",
    re.IGNORECASE,
)
# "www dot site dot com", "site [dot] com", "[Web Link]", "link in bio"
_OBFUSCATED = re.compile(
    r"\bw\s*w\s*w\s*(?:\.|\(dot\)|\[dot\]|\bdot\b)|"
    r"(?:\(|\[)?\s*\bdot\s*(?:\)|\])?\s*(?:com|net|org|info|co|ru|io)\b|"
    r"\[\s*web\s*link\s*\]|\blink\s+in\s+(?:my\s+)?(?:bio|profile|channel)\b",
    re.IGNORECASE,
)
_EMAIL = re.compile(r"\b[\w.+-]+\s*(?:@|\(at\)|\[at\])\s*[\w-]+\s*(?:\.|\bdot\b)\s*[a-z]{2,}\b", re.IGNORECASE)
_PHONE = re.compile(r"(?<![\w])\+?\d[\d\s().-]{7,}\d(?![\w])")
_MENTION = re.compile(r"(?<![\w@])@[\w.]{2,}")
_REPEAT = re.compile(r"(.)\1{2,}", re.DOTALL)
_SPACE = re.compile(r"\s+")


def _mostly_caps(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    if len(letters) < 8:
        return False
    return sum(c.isupper() for c in letters) / len(letters) > 0.7


def normalize_text(text: str) -> str:
    """Return the normalized form of one comment (lower-cased, markers substituted).

    Deterministic and idempotent enough for our purpose; never raises on any ``str``.
    """
    text = html.unescape(text)
    text = _TAG.sub(" ", text)
    text = unicodedata.normalize("NFKC", text)
    caps = _mostly_caps(text)
    text = _EMAIL.sub(EMAIL_TOKEN, text)
    text = _SHORTENER.sub(SHORT_URL_TOKEN, text)
    text = _URL.sub(URL_TOKEN, text)
    text = _OBFUSCATED.sub(URL_TOKEN, text)
    text = _PHONE.sub(PHONE_TOKEN, text)
    text = _MENTION.sub(MENTION_TOKEN, text)
    text = _REPEAT.sub(r"\1\1", text)
    text = text.lower()
    if caps:
        text += CAPS_TOKEN
    return _SPACE.sub(" ", text).strip()
