"""normalize_text must keep its output exactly: it defines the model's input.

The optimized implementation (substring gates before the regexes, the last step compiled) is
compared with the original all-regex implementation, kept below verbatim as the reference. A
deliberate change to normalization changes both, and retrains the model.
"""

from __future__ import annotations

import html
import re
import sys
import unicodedata

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modclf import _kernels as K
from modclf import text as T
from modclf.text import finish, normalize_text, prenormalize

from .conftest import DATA, SHARED_EVAL

URL_TOKEN = " zzurl "
SHORT_URL_TOKEN = " zzurl zzshorturl "
EMAIL_TOKEN = " zzemail "
PHONE_TOKEN = " zzphone "
MENTION_TOKEN = " zzmention "
CAPS_TOKEN = " zzcaps "

# ---------------------------------------------------------------- the reference (original code)

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


def reference_normalize_text(text: str) -> str:
    """modclf.text.normalize_text as it was before it was optimized (all regexes, no gates)."""
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


# ---------------------------------------------------------------- inputs

# Pieces that reach every branch: markers, link and contact disguises, runs, Unicode whitespace,
# case oddities (final sigma, titlecase, dotted I), digits that are not ASCII, HTML.
FRAGMENTS = [
    "http", "https", "://", ": / /", "www", "w w w", "ww", ".", ". ", "com", "co", "ly", "gl", "dot", "(dot)", "[dot]",
    "[", "]", "(", ")", "web link", "link in bio", "link in my profile", "bit", "bit . ly", "goo", "tinyurl", "t.co",
    "is.gd", "youtu.be", "shorturl at", "tiny cc", "/", "/abc", "@", "(at)", "[at]", "@user", "a@b.com", "+1 ", "555",
    "123-4567", "(555) 123 4567", "١٢٣٤٥٦٧٨٩", "0", " ", "  ", "   ", "\t", "\n", "\u3000", "\x1c", "\xa0", "\u2028",
    "\u200b", "\ufeff", "a", "aaa", "AAAA", "Hello", "WORLD", "THIS IS LOUD", "x", "!", "?", "!!!", "???", "é", "ÉÉÉ",
    "Σ", "ΣΑΣ", "ǅ", "İ", "ß", "ﬁ", "ｈｔｔｐ", "😀", "😀😀😀", "_", "__", "-", "&amp;", "&lt;b&gt;", "<b>", "</a>", "<",
    "zz", "zzurl", "\ud800", "ok", "the", " and ", ".net", ".io/x", "site.com/path", "..", "a.b",
]
texts = st.one_of(
    st.text(max_size=120),
    st.lists(st.sampled_from(FRAGMENTS), max_size=14).map("".join),
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=4)), max_size=10).map("".join),
)


def corpus_texts() -> list[str]:
    out = pd.read_csv(DATA, dtype=str, keep_default_na=False)["text"].tolist()
    for name in ("real_dev_labeled.csv", "seed_comments.csv"):
        if (SHARED_EVAL / name).is_file():
            out += pd.read_csv(SHARED_EVAL / name, dtype=str, keep_default_na=False)["text"].tolist()
    return out


# ---------------------------------------------------------------- tests


@settings(max_examples=1500, deadline=None)
@given(texts)
def test_same_output_as_the_reference(text: str) -> None:
    assert normalize_text(text) == reference_normalize_text(text)


def test_same_output_as_the_reference_on_every_known_comment() -> None:
    diff = [t for t in corpus_texts() if normalize_text(t) != reference_normalize_text(t)]
    assert diff == []


@pytest.mark.parametrize("text", ["", " ", "\ud800x", "a\U000e0001b", "\U0010ffff" * 3, "x" * 10000, "ＡＢＣＤＥＦＧＨＩ"])
def test_same_output_on_edge_cases(text: str) -> None:
    assert normalize_text(text) == reference_normalize_text(text)


@settings(max_examples=500, deadline=None)
@given(texts.map(str.lower))
def test_link_gates_are_exact(text: str) -> None:
    assert T._has_link_hint(text) == bool(_LINK_HINT.search(text))
    ungated = _OBFUSCATED.sub(URL_TOKEN, _URL.sub(URL_TOKEN, _SHORTENER.sub(SHORT_URL_TOKEN, text)))
    assert T._replace_links(text) == ungated


@settings(max_examples=500, deadline=None)
@given(texts)
def test_compiled_last_step(text: str) -> None:
    assert finish(text) == " ".join(_REPEAT.sub(r"\1\1", text).split())
    assert normalize_text(text) == finish(prenormalize(text))


def test_character_table_matches_python_for_every_code_point() -> None:
    """The kernels' flags agree with str.split(), regex \\w, isalpha and isupper on all of Unicode."""
    n = sys.maxunicode + 1
    chars = np.arange(n, dtype=np.uint32).tobytes().decode("utf-32-le", "surrogatepass")
    flags = np.zeros(n, dtype=np.uint8)
    flags[: T.FLAG_TABLE_SIZE] = T.char_flags()
    word = np.zeros(n, dtype=bool)
    word[[m.start() for m in re.finditer(r"\w", chars)]] = True
    for bit, expected in ((K.SPACE, np.fromiter(map(str.isspace, chars), bool, n)),
                          (K.ALPHA, np.fromiter(map(str.isalpha, chars), bool, n)),
                          (K.UPPER, np.fromiter(map(str.isupper, chars), bool, n)),
                          (K.WORD, word)):
        assert np.array_equal((flags & bit) != 0, expected), bit
    # str.split() separators are exactly the isspace characters
    spaces = np.flatnonzero(flags & K.SPACE)
    assert all(len(f"a{chr(c)}b".split()) == 2 for c in spaces)
