"""normalize_text must keep its output exactly: it defines the model's input.

The optimized implementation (substring gates before the regexes, the last step compiled) is
compared with the original all-regex implementation, kept below verbatim as the reference. A
deliberate change to normalization changes both, and retrains the model. The steps that undo
spammers' disguises (look-alike letters, invisible characters, marks, spelled-out words, written-out
dots) are written below as plainly as possible, without the module's gates and compiled parts.
"""

from __future__ import annotations

import collections
import html
import itertools
import re
import string
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

_TAG = re.compile(r"<\s*/?\s*([a-zA-Z][a-zA-Z0-9]*)[^<>]{0,200}>|<!--.{0,200}?-->", re.DOTALL)
_RLO_RUN = re.compile("\u202e([^\u202c\n]*)")
_PERCENT_ESCAPE = re.compile(r"%([0-9a-fA-F]{2})")


def _unpercent(match: re.Match) -> str:
    c = chr(int(match.group(1), 16))
    return c if c.isascii() and (c.isalnum() or c in "-./:_~") else match.group()


def reference_mark_domains(text: str) -> str:
    for start, end in reversed(T.domain_spans_plain(text)):
        text = text[:start] + URL_TOKEN + text[end:]
    return text
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
_PHONE = re.compile(r"(?<![\w])\+?\d[\d\s().\u2022\u00b7_-]{7,}\d(?![\w])")
_PHONE_PLUS = re.compile(r"(?<![\w+])\+\d[\d\s().\u2022\u00b7_/|-]{7,}\d(?![\w])")
_MENTION = re.compile(r"(?<![\w@])@[\w.]{2,}")
_REPEAT = re.compile(r"(.)\1{2,}", re.DOTALL)


_ASCII_UPPER = bytes(range(65, 91))
_ASCII_NOT_UPPER = bytes(b for b in range(256) if b not in _ASCII_UPPER)
_ASCII_NOT_ALPHA = bytes(b for b in range(256) if not (65 <= b <= 90 or 97 <= b <= 122))
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


# ---- disguises (the character tables are data, taken from the module)
_SCRIPT_BLOCKS = ((0x0370, 0x058F),)  # Greek and Coptic, Cyrillic, Cyrillic Supplement, Armenian
_LATIN = set(string.ascii_letters)
_LATIN_OR_DIGIT = set(string.ascii_letters + string.digits)
_SPELLED = re.compile(r"(?<![^\W_])[^\W_](?:(?:\s+|\s*[-_.*·•|/+~,:]\s*)[^\W_](?![^\W_])){3,}")
_BRACKET_DOT = re.compile(r"\s*(?:\(\s*(?:\.|dot)\s*\)|\[\s*(?:\.|dot)\s*\]|\{\s*(?:\.|dot)\s*\})\s*")
_LOOSE_DOT = re.compile(r"\s+dot\s+(?=(?:biz|xyz|tv|gg|uk|ly|shop|site|online|club|store)\b)"
                        r"|(?:\s+\.\s*|\.\s+)(?=(?:com|org|ru|xyz|biz|io|gg)\b)")


def _in(ranges: tuple[tuple[int, int], ...], c: str) -> bool:
    return any(a <= ord(c) <= b for a, b in ranges)


def reference_fold_unicode(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    text = "".join(c for c in text if not _in(T.IGNORABLE_RANGES, c))
    text = "".join(T.ALWAYS_FOLD.get(c, c) for c in text)
    # look-alike letters: per run of letters (str.isalpha)
    real = mixed = 0
    candidates = []
    start = 0
    for is_letter, group in itertools.groupby(text, str.isalpha):
        run = "".join(group)
        end = start + len(run)
        if is_letter:
            if any(_in(_SCRIPT_BLOCKS, c) and c not in T.SCRIPT_FOLD for c in run):
                real += 1
            elif any(c in T.SCRIPT_FOLD for c in run):
                latin = any(c in _LATIN for c in run)
                mixed += latin
                candidates.append((start, end, latin))
        start = end
    fold_all = mixed > real or (real == 0 and any(c in _LATIN for c in text))
    chars = list(text)
    for start, end, latin in candidates:
        if latin or fold_all:
            for i in range(start, end):
                chars[i] = T.SCRIPT_FOLD.get(chars[i], chars[i])
    # combining marks after ASCII letters and digits
    out: list[str] = []
    on_latin = False
    for c in chars:
        if on_latin and _in(T.MARK_RANGES, c):
            continue
        out.append(c)
        on_latin = c in _LATIN_OR_DIGIT
    return unicodedata.normalize("NFC", "".join(out))


def reference_join_spelled(match: re.Match) -> str:
    tokens = re.findall(r"[^\W_]|[\W_]+", match.group())
    singles, seps = tokens[0::2], tokens[1::2]
    if sum(c.isalpha() for c in singles) < 4:
        return match.group()
    kinds = [sep if sep.isspace() else sep.strip() for sep in seps]
    counts = collections.Counter(kinds)
    spacers = {next(k for k in kinds if counts[k] == max(counts.values()))}
    for i in range(len(kinds) - 2):
        if kinds[i] == kinds[i + 1] == kinds[i + 2]:
            spacers.add(kinds[i])
    out = singles[0]
    for kind, single in zip(kinds, singles[1:]):
        if kind not in spacers:
            out += " " if kind.isspace() else kind
        out += single
    return out


def reference_normalize_text(text: str) -> str:
    """modclf.text.normalize_text as it was before it was optimized (all regexes, no gates)."""
    if "&" in text:
        text = html.unescape(text)
    text = _PERCENT_ESCAPE.sub(_unpercent, text)
    text = _RLO_RUN.sub(lambda m: m.group(1)[::-1], text)
    if not text.isascii():
        text = reference_fold_unicode(text)
    text = _TAG.sub(lambda m: "" if m.group(1) is None or m.group(1).lower() in T._INLINE_TAGS else " ", text)
    caps = _mostly_caps(text)
    text = reference_mark_domains(text).lower()
    text = _BRACKET_DOT.sub(".", text)
    text = _SPELLED.sub(reference_join_spelled, text)
    text = _LOOSE_DOT.sub(".", text)
    text = T._DOT_WORD.sub(T._dot_word, text)
    if "@" in text or "(at)" in text or "[at]" in text:
        text = _EMAIL.sub(EMAIL_TOKEN, text)
    if _LINK_HINT.search(text):
        text = _SHORTENER.sub(SHORT_URL_TOKEN, text)
        text = _URL.sub(URL_TOKEN, text)
        text = _OBFUSCATED.sub(URL_TOKEN, text)
    if len(text) - len(text.translate(_DIGITS)) >= 8:
        text = _PHONE.sub(PHONE_TOKEN, text)
        text = _PHONE_PLUS.sub(PHONE_TOKEN, text)
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
    # disguises: look-alikes, invisible characters, marks, enclosed letters, spelled-out words, dots
    "а", "о", "е", "р", "с", "Р", "ѕ", "і", "к", "л", "и", "ο", "ρ", "λ", "օ", "сheар", "ԝԝԝ", "ɑ", "ı", "ᴀ", "🅰", "➊",
    "⓿", "ⓦ", "𝐛", "\u00ad", "\u200d", "\ufe0f", "\U000e0041", "\u2066", "\u3164", "\u2800", "\u0301", "\u0336",
    "\u20e3", "\u0483", "e\u0301", "1\ufe0f\u20e3", "s i t e", "s.i.t.e", "c-h-e-a-p", " . ", " - ", "_", "*", "|",
    "•", "(.)", "[ . ]", "{dot}", "(dot)", " dot ", "dot xyz", ". com", " .com", "ru", "xyz", "1 2 3 4",
    # bare domains, percent-escapes, overrides, inline tags, hooked letters, other digits, flag letters
    ".to", ".TO", ".vip/x", "site.lol", "SITE", "。", "·", "\u06d4", ",com", "_com", "c0m", "%2E", "%2e", "%73", "%20",
    "%", "\u202e", "\u202c", "<abbr>", "</abbr>", "<!--", "-->", "<br>", "ƈ", "ø", "ł", "ʂ", "٣", "०", "🇸", "\u0951",
    "\u0600", "\ufff9", "+963/944/123/456", "+1|555|0100", "/", "|",
    # dots as words and spaced symbols (round 3)
    " punto ", " point ", " period ", "dawt", " d0t ", "dotcom", ".c.o.m", ".c om", " • ", " / ", " ~ ", "🔹", "net",
    "org", "income", " nokta ", "точка", " ponto ", " d o t ", "d.o.t", "-dot-", "'", "<", ">", ",", " , ", "·",
    " \u00b7 ", "top", "to", "me", " punto de ",
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
    bare = text.replace("http", "h").replace("www", "w")
    if "http" not in bare and "www" not in bare:
        assert T._bare_domains(bare) == _URL.sub(URL_TOKEN, bare)


spelled = st.lists(st.one_of(st.sampled_from(["a", "B", "é", "ж", "7", "_", "ab", "x1"]),
                            st.sampled_from([" ", "  ", "\n", "-", " . ", ".", "_", "*", "·", " / ", ",", "!", "(.)"])),
                  max_size=24).map("".join)


dots = st.lists(st.sampled_from(["site", "a", " ", "  ", "\n", "\t", ".", " . ", ". ", " .", "dot", " dot ", "com", "xyz",
                                  "org", "shop", "comx", "(", ")", "[", "]", "{", "}", "(.)", "( dot )", "[dot]", "{.}"]),
               max_size=16).map("".join)


@settings(max_examples=1500, deadline=None)
@given(st.one_of(spelled, dots, texts.map(str.lower)))
def test_spelled_and_dot_gates_are_exact(text: str) -> None:
    runs = [m for m in _SPELLED.finditer(text) if sum(c.isalpha() for c in m.group()) >= 4]
    first = runs[0].start() if runs else -1
    assert K.next_spelled_run(T._codepoints(text), T.char_flags(), 0) == first
    if text.isascii():
        assert K.next_spelled_run(text.encode("ascii"), T.char_flags(), 0) == first
    assert T.join_spelled(text) == _SPELLED.sub(reference_join_spelled, text)
    ungated = T._DOT_WORD.sub(T._dot_word, _LOOSE_DOT.sub(".", _SPELLED.sub(reference_join_spelled,
                                                                            _BRACKET_DOT.sub(".", text))))
    assert T.repair_dots(text) == ungated


@settings(max_examples=500, deadline=None)
@given(texts)
def test_compiled_last_step(text: str) -> None:
    assert finish(text) == " ".join(_REPEAT.sub(r"\1\1", text).split())
    assert normalize_text(text) == finish(prenormalize(text))


def test_disguise_tables() -> None:
    """The look-alike tables and the flag bits the compiled cleaning reads agree with their definitions."""
    flags = T.char_flags()
    for c, latin in T.SCRIPT_FOLD.items():
        assert 0x0370 <= ord(c) <= 0x058F and c.isalpha() and len(latin) == 1 and latin.isascii() and latin.isalpha()
        assert T._SCRIPT_CLASS[ord(c) - K.SCRIPT_FIRST] == K.LOOKALIKE
        assert T._SCRIPT_LATIN[ord(c) - K.SCRIPT_FIRST] == ord(latin)
    assert T.SCRIPT_BLOCKS == (K.SCRIPT_FIRST, K.SCRIPT_FIRST + len(T._SCRIPT_CLASS) - 1) == (0x0370, 0x058F)
    # Latin letters with diacritics, from every code point: NFD is an ASCII letter or digit plus marks
    base = {}
    for c in map(chr, range(sys.maxunicode + 1)):
        d = unicodedata.normalize("NFD", c)
        if len(d) > 1 and d[0] in _LATIN_OR_DIGIT and all(_in(T.MARK_RANGES, m) for m in d[1:]):
            base[c] = d[0]
    hooked = {c: plain for c, plain in T.LATIN_BASE.items() if c not in base}
    assert {c: T.LATIN_BASE[c] for c in base} == base
    for c, plain in hooked.items():  # the rest: Latin letters "with" a hook, stroke... by their Unicode name
        name = unicodedata.name(c)
        assert name.startswith("LATIN ") and f" LETTER {plain.upper()} " in name + " " and plain.isalpha(), (c, name)
    assert {"ƈ": "c", "ʂ": "s", "ł": "l", "ø": "o", "ƭ": "t", "ɨ": "i", "ⱥ": "a", "Ɍ": "R"}.items() <= hooked.items()
    # every format character renders as nothing, every combining mark is a mark; every digit is folded
    for c in map(chr, range(sys.maxunicode + 1)):
        category = unicodedata.category(c)
        if category == "Cf":
            assert _in(T.IGNORABLE_RANGES, c), hex(ord(c))
        elif category in ("Mn", "Me"):
            assert _in(T.MARK_RANGES, c), hex(ord(c))
        elif category == "Nd" and ord(c) < 0x10000 and not unicodedata.normalize("NFKC", c).isascii():
            assert T.ALWAYS_FOLD.get(c) == str(unicodedata.decimal(c)), hex(ord(c))
    for c, plain in T.ALWAYS_FOLD.items():
        assert ord(c) < T.FLAG_TABLE_SIZE and not 0x0370 <= ord(c) <= 0x058F and plain.isascii() and 1 <= len(plain) <= 2
    expected = {bit: np.zeros(T.FLAG_TABLE_SIZE, dtype=bool) for bit in (K.IGNORABLE, K.MARK, K.FOLD, K.LATIN)}
    for bit, ranges in ((K.IGNORABLE, T.IGNORABLE_RANGES), (K.MARK, T.MARK_RANGES)):
        for a, b in ranges:
            expected[bit][a:min(b, T.FLAG_TABLE_SIZE - 1) + 1] = True
    expected[K.FOLD][[ord(c) for c in T.ALWAYS_FOLD]] = True
    expected[K.LATIN][[ord(c) for c in string.ascii_letters + string.digits]] = True
    for bit, want in expected.items():
        assert np.array_equal((flags & bit) != 0, want), bit
    assert all(a >= T.FLAG_TABLE_SIZE or b < T.FLAG_TABLE_SIZE for a, b in T.IGNORABLE_RANGES)
    assert [r for r in T.IGNORABLE_RANGES if r[0] >= T.FLAG_TABLE_SIZE] == [(0xE0000, 0xE0FFF)]  # checked in code


def test_character_table_matches_python_for_every_code_point() -> None:
    """The kernels' flags agree with str.split(), regex \\w, isalpha and isupper on all of Unicode."""
    n = sys.maxunicode + 1
    chars = np.arange(n, dtype=np.uint32).tobytes().decode("utf-32-le", "surrogatepass")
    flags = np.zeros(n, dtype=np.uint8)
    flags[: T.FLAG_TABLE_SIZE] = T.char_flags()
    word = np.zeros(n, dtype=bool)
    word[[m.start() for m in re.finditer(r"\w", chars)]] = True
    space = np.zeros(n, dtype=bool)  # regex \s (used by the spelled-out-word gate) is str.isspace() too
    space[[m.start() for m in re.finditer(r"\s", chars)]] = True
    assert np.array_equal(space, np.fromiter(map(str.isspace, chars), bool, n))
    for bit, expected in ((K.SPACE, np.fromiter(map(str.isspace, chars), bool, n)),
                          (K.ALPHA, np.fromiter(map(str.isalpha, chars), bool, n)),
                          (K.UPPER, np.fromiter(map(str.isupper, chars), bool, n)),
                          (K.WORD, word)):
        assert np.array_equal((flags & bit) != 0, expected), bit
    # str.split() separators are exactly the isspace characters
    spaces = np.flatnonzero(flags & K.SPACE)
    assert all(len(f"a{chr(c)}b".split()) == 2 for c in spaces)


def test_char_flags_cache_equals_the_built_table(tmp_path, monkeypatch):
    """The flag table kept in __pycache__ is the one Python's predicates give; a bad cache file is rebuilt."""
    import numpy as np

    from modclf import text as T

    built = T._build_char_flags()
    assert np.array_equal(T.char_flags(), built)
    cache = tmp_path / "__pycache__" / "char_flags.test.npy"
    monkeypatch.setattr(T, "_flags_cache_path", lambda: cache)
    T.char_flags.cache_clear()
    try:
        assert np.array_equal(T.char_flags(), built) and cache.is_file()  # written
        T.char_flags.cache_clear()
        assert np.array_equal(T.char_flags(), built)  # read back
        cache.write_bytes(b"not a numpy file")
        T.char_flags.cache_clear()
        assert np.array_equal(T.char_flags(), built)  # corrupt: rebuilt
    finally:
        T.char_flags.cache_clear()
