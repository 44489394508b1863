"""Text normalization: the one place raw comment text is cleaned before feature extraction.

Comments arrive with HTML leftovers, links in every disguise (look-alike and invisible characters,
spelled-out letters and dots included), contact details and stretched letters. Mapping those to a
few marker tokens lets a linear model learn "has a link" once instead of once per domain, which is
what generalizes from our corpus to comments we have never seen.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import html
import os
import itertools
import re
import string
import unicodedata
from pathlib import Path

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
_NON_ASCII = bytes(range(128, 256))

# ---------------------------------------------------------------- Unicode disguises
# Non-ASCII text is brought to NFKC (fullwidth, mathematical, circled and squared letters and digits,
# ligatures and superscripts become their plain forms), then cleaned (fold_unicode): what spammers
# put between and over the letters of a link drop is removed, and look-alike letters go back to the
# Latin ones they imitate.

#: Default_Ignorable_Code_Point (Unicode DerivedCoreProperties): characters that render as nothing.
#: Zero-width space and joiners, direction marks, embeddings and isolates, word joiner, invisible
#: operators, soft hyphen, combining grapheme joiner, Hangul fillers, Mongolian variation selectors,
#: variation selectors, byte-order mark, tag characters. (Video-site comments often end with U+FEFF.)
IGNORABLE_RANGES: tuple[tuple[int, int], ...] = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160), (0x17B4, 0x17B5), (0x180B, 0x180F),
    (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF),
)
#: Combining marks removed when they follow an ASCII letter or digit: diacritical marks and their
#: extensions and supplement, Cyrillic combining signs, marks for symbols (keycap, enclosing circle),
#: half marks. (Latin letters with diacritics are folded to the plain letter: LATIN_BASE.)
MARK_RANGES: tuple[tuple[int, int], ...] = (
    (0x0300, 0x036F), (0x0483, 0x0489), (0x1AB0, 0x1AFF), (0x1DC0, 0x1DFF), (0x20D0, 0x20FF), (0xFE20, 0xFE2F),
)


def _ranges(chars: str) -> tuple[tuple[int, int], ...]:
    points = sorted(set(map(ord, chars)))
    out: list[list[int]] = []
    for p in points:
        if out and out[-1][1] == p - 1:
            out[-1][1] = p
        else:
            out.append([p, p])
    return tuple((a, b) for a, b in out)


def _char_class(ranges: tuple[tuple[int, int], ...] | str) -> str:
    """Regex class body; consecutive code points as ranges (re checks characters above U+FFFF one
    item at a time, so a class of many single astral characters is slow)."""
    if isinstance(ranges, str):
        ranges = _ranges(ranges)
    return "".join(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges)


def _pairs(spec: str) -> dict[str, str]:
    """``"аa сc"`` -> {"а": "a", "с": "c"}: each item is one look-alike followed by its replacement."""
    return {item[0]: item[1:] for item in spec.split()}


def _in_ranges(c: int, ranges: tuple[tuple[int, int], ...]) -> bool:
    return any(a <= c <= b for a, b in ranges)


def _latin_base() -> dict[str, str]:
    """Letters and digits whose canonical decomposition is an ASCII letter or digit plus marks of
    MARK_RANGES (é, Ş, ṃ, ǚ ...) -> that ASCII character. (Scanned below U+3000: there are none above.)"""
    out = {}
    for c in range(0x80, 0x3000):
        d = unicodedata.normalize("NFD", chr(c))
        if len(d) > 1 and d[0].isascii() and d[0].isalnum() and all(_in_ranges(ord(m), MARK_RANGES) for m in d[1:]):
            out[chr(c)] = d[0]
    return out


#: Latin letters with diacritics -> the plain letter (comments spell "café" and "cafe" alike, and
#: spammers put accents on the letters of a link: "ƈĥéąṗ").
LATIN_BASE: dict[str, str] = _latin_base()
#: Always folded: Latin letters with diacritics, Latin-script letters no text needs (small
#: capitals, dotless and script forms), letters and digits in negative circles and squares (NFKC
#: leaves them), Braille blank as a space.
ALWAYS_FOLD: dict[str, str] = {
    **LATIN_BASE,
    **_pairs("ɑa ɡg ıi ȷj ɩi ǀl ʀr ɪi ʟl ɴn ʏy ʜh ʙb ɢg ᴀa ᴄc ᴅd ᴇe ꜰf ᴊj ᴋk ᴍm ᴏo ᴘp ꜱs ᴛt ᴜu ᴠv ᴡw ᴢz ꞯq"),
    **{chr(0x1F150 + i): chr(65 + i) for i in range(26)},  # negative circled A-Z
    **{chr(0x1F170 + i): chr(65 + i) for i in range(26)},  # negative squared A-Z
    **{chr(0x2776 + i): str(i + 1) for i in range(10)},  # dingbat negative circled 1-10
    **{chr(0x2780 + i): str(i + 1) for i in range(10)},  # dingbat circled sans-serif 1-10
    **{chr(0x278A + i): str(i + 1) for i in range(10)},  # dingbat negative circled sans-serif 1-10
    **{chr(0x24EB + i): str(i + 11) for i in range(10)},  # negative circled 11-20
    **{chr(0x24F5 + i): str(i + 1) for i in range(10)},  # double circled 1-10
    "\u24ff": "0", "\U0001f10b": "0", "\U0001f10c": "0", "\u2800": " ",
}
#: Cyrillic, Greek and Armenian letters that look like Latin ones (Unicode confusables, and the
#: lower-case forms of capitals that do; ς too, because NFKC turns the lunate sigma ϲ into it).
#: Folded only where they disguise Latin text (see fold_unicode), so Russian, Ukrainian or Greek
#: words stay as they are.
SCRIPT_FOLD: dict[str, str] = _pairs(
    "аa вb сc ԁd еe ҽe һh іi ӏl јj кk мm нh оo рp ԛq гr ѕs тt ԝw хx уy үy ьb ѵv "
    "АA ВB СC ԀD ЕE НH ІI ӀI ЈJ КK МM ОO РP ԚQ ЅS ТT ԜW ХX УY ҮY Ьb "
    "αa βb εe ηn ιi κk νv οo ρp τt υu χx γy ωw ϲc ςc ϳj "
    "ΑA ΒB ΕE ΖZ ΗH ΙI ΚK ΜM ΝN ΟO ΡP ΤT ΥY ΧX ϹC "
    "օo ոn սu հh ցg զq ՕO ՍU"
)
#: Where the letters of those scripts lie (Greek and Coptic, Cyrillic, Cyrillic Supplement, Armenian).
SCRIPT_BLOCKS = (K.SCRIPT_FIRST, 0x058F)

#: ALWAYS_FOLD for the kernel: sorted keys, replacement offsets into one pool of code points.
_FOLD_KEYS = np.array(sorted(map(ord, ALWAYS_FOLD)), dtype=np.uint32)
_FOLD_STARTS = np.cumsum([0] + [len(ALWAYS_FOLD[chr(k)]) for k in _FOLD_KEYS]).astype(np.int64)
_FOLD_POOL = np.array([ord(c) for k in _FOLD_KEYS for c in ALWAYS_FOLD[chr(k)]], dtype=np.uint32)


def _script_tables() -> tuple[np.ndarray, np.ndarray]:
    """Per code point of SCRIPT_BLOCKS: class (K.LOOKALIKE, K.SCRIPT_OTHER for other letters, 0)
    and the Latin look-alike's code point (0 for none)."""
    chars = [chr(c) for c in range(SCRIPT_BLOCKS[0], SCRIPT_BLOCKS[1] + 1)]
    cls = [K.LOOKALIKE if c in SCRIPT_FOLD else K.SCRIPT_OTHER if c.isalpha() else 0 for c in chars]
    latin = [ord(SCRIPT_FOLD[c]) if c in SCRIPT_FOLD else 0 for c in chars]
    return np.array(cls, dtype=np.uint8), np.array(latin, dtype=np.uint32)


_SCRIPT_CLASS, _SCRIPT_LATIN = _script_tables()


def _attention_classes() -> tuple[re.Pattern, re.Pattern]:
    """Regexes finding any character the cleaning acts on: BMP ones in the string (one character
    class, fast in re); the few astral ones by the leading bytes of their UTF-8 form (a class with
    astral ranges is checked range by range for every character of the text, which is slow)."""
    ranges = [*IGNORABLE_RANGES, *MARK_RANGES, *_ranges("".join(ALWAYS_FOLD) + "".join(SCRIPT_FOLD))]
    bmp = tuple((a, min(b, 0xFFFF)) for a, b in ranges if a <= 0xFFFF)
    thirds: dict[bytes, set[int]] = collections.defaultdict(set)  # first two bytes -> third bytes
    for a, b in ranges:
        for c in range(max(a, 0x10000), b + 1):
            lead = chr(c).encode("utf-8")
            thirds[lead[:2]].add(lead[2])
    astral = b"|".join(re.escape(two) + (b"" if len(third) == 64 else b"[" + b"".join(re.escape(bytes([t])) for t in
                                                                                     sorted(third)) + b"]")
                       for two, third in sorted(thirds.items()))
    return re.compile(f"[{_char_class(bmp)}]"), re.compile(astral)


_ATTENTION, _ATTENTION_ASTRAL = _attention_classes()


def fold_unicode(text: str) -> str:
    """NFKC, then the disguises undone (one compiled pass, K.clean_text), then NFC. In order:

    1. IGNORABLE_RANGES removed, ALWAYS_FOLD applied;
    2. look-alikes (SCRIPT_FOLD) folded in the runs of letters they disguise. A run qualifies when
       its Cyrillic/Greek/Armenian letters all have a Latin look-alike (real words of those
       languages almost always have others: и л д п я б ж ш й, λ π σ δ ά ...). A qualifying run
       that also has ASCII letters ("сheар") is folded; one of look-alikes only ("сору") when the
       comment shows a disguise: more such mixed runs than runs with other letters of those
       scripts, or none of the latter while it has ASCII letters. "Glory to the heroes, слава
       Україні" keeps its Ukrainian;
    3. MARK_RANGES marks removed after an ASCII letter or digit (and after marks so removed).
    """
    text = unicodedata.normalize("NFKC", text)
    if _ATTENTION.search(text) is None \
            and _ATTENTION_ASTRAL.search(text.encode("utf-8", "surrogatepass")) is None:
        return text
    cp = _codepoints(text)
    out = np.empty(2 * cp.size, dtype=np.uint32)  # ALWAYS_FOLD replacements are at most 2 long
    n = K.clean_text(cp, char_flags(), _FOLD_KEYS, _FOLD_STARTS, _FOLD_POOL, _SCRIPT_CLASS, _SCRIPT_LATIN, out)
    if n < 0:  # nothing changed
        return text
    return unicodedata.normalize("NFC", out[:n].tobytes().decode("utf-32-le", "surrogatepass"))


# ---------------------------------------------------------------- spelled-out words and dots
#: Separators between spelled-out letters: whitespace, or one of these with optional whitespace.
SPELL_PUNCT = K.SPELL_PUNCT
#: 4+ single letters or digits in a row, each separated from the next by whitespace or one
#: SPELL_PUNCT character ("w w w . s i t e . c o m", "s.i.t.e", "c-h-e-a-p").
_SPELLED = re.compile(
    rf"(?<![^\W_])[^\W_](?:(?:\s+|\s*[{re.escape(SPELL_PUNCT)}]\s*)[^\W_](?![^\W_])){{3,}}"
)
_SINGLE = re.compile(r"([^\W_])")
#: Fewer letters than this in a run (a list of numbers, "1 - 2 - 3 - 4") are left alone.
SPELLED_MIN_LETTERS = K.SPELLED_MIN_LETTERS


def _join_spelled(match: re.Match) -> str:
    """One spelled-out run back as words: the separators that spell go, the others stay.

    A separator's kind is its whitespace exactly, or its punctuation character. The most frequent
    kind spells, and so does any kind found 3+ times in a row (a 4+ letter word spelled with it);
    the others stay, whitespace as one space. "w w w . s i t e . c o m" -> "www.site.com",
    "c-h-e-a-p p.i.l.l.s" -> "cheap pills", "f r e e  m o n e y" -> "free money",
    "s-i-t-e.r-u/d/1-2" -> "site.ru/d/12".
    """
    parts = _SINGLE.split(match.group())
    singles, seps = parts[1::2], parts[2:-1:2]
    if sum(map(str.isalpha, singles)) < SPELLED_MIN_LETTERS:
        return match.group()
    kinds = [sep if sep.isspace() else sep.strip() for sep in seps]
    spacers = {collections.Counter(kinds).most_common(1)[0][0]}
    spacers.update(kind for kind, same in itertools.groupby(kinds) if len(list(same)) >= 3)
    out = [singles[0]]
    for kind, single in zip(kinds, singles[1:]):
        if kind not in spacers:
            out.append(" " if kind.isspace() else kind)
        out.append(single)
    return "".join(out)


def join_spelled(text: str) -> str:
    """``_SPELLED.sub(_join_spelled, text)``; a compiled scan finds the runs that change (rarely any)."""
    chars = text.encode("ascii") if text.isascii() else _codepoints(text)
    flags = char_flags()
    start = K.next_spelled_run(chars, flags, 0)
    if start < 0:
        return text
    out, last = [], 0
    while start >= 0:
        match = _SPELLED.match(text, start)
        if match is None:  # cannot happen (the tests check the scan against the regex); stay exact anyway
            return _SPELLED.sub(_join_spelled, text)
        out += (text[last:start], _join_spelled(match))
        last = match.end()
        start = K.next_spelled_run(chars, flags, last)
    out.append(text[last:])
    return "".join(out)


# "(.)", "[dot]", "{ . }" -> "."; also a written-out dot before a top-level domain that _OBFUSCATED
# does not know ("site dot xyz"; "dot com" stays its marker, "the dot com boom" is English) and a
# spaced dot before one that is not an English word ("site . com"). Text is lower-cased here.
_BRACKET_DOT = re.compile(r"\s*(?:\(\s*(?:\.|dot)\s*\)|\[\s*(?:\.|dot)\s*\]|\{\s*(?:\.|dot)\s*\})\s*")
_DOT_WORD_TLD = "biz|xyz|tv|gg|uk|ly|shop|site|online|club|store"
_SPACED_DOT_TLD = "com|org|ru|xyz|biz|io|gg"
_LOOSE_DOT = re.compile(rf"\s+dot\s+(?=(?:{_DOT_WORD_TLD})\b)|(?:\s+\.\s*|\.\s+)(?=(?:{_SPACED_DOT_TLD})\b)")
# The same substitutions driven by patterns that start with a literal (re finds those in C; the
# patterns above start with \s* or \s+ and are tried at every position): the whitespace around
# each core is taken in Python. The tests compare with the plain substitutions.
_BRACKET_CORES = (("(", re.compile(r"\(\s*(?:\.|dot)\s*\)")), ("[", re.compile(r"\[\s*(?:\.|dot)\s*\]")),
                  ("{", re.compile(r"\{\s*(?:\.|dot)\s*\}")))
_BRACKET_CORE = re.compile(r"\(\s*(?:\.|dot)\s*\)|\[\s*(?:\.|dot)\s*\]|\{\s*(?:\.|dot)\s*\}")
_DOT_WORD_CORE = re.compile(rf"dot\s+(?=(?:{_DOT_WORD_TLD})\b)")
_SPACED_DOT_CORE = re.compile(rf"\.\s*(?=(?:{_SPACED_DOT_TLD})\b)")


def _space_before(text: str, i: int, floor: int) -> int:
    while i > floor and text[i - 1].isspace():
        i -= 1
    return i


def _bracket_dots(text: str) -> str:
    """``_BRACKET_DOT.sub(".", text)``."""
    if not ("(" in text or "[" in text or "{" in text) \
            or not any(bracket in text and core.search(text) is not None for bracket, core in _BRACKET_CORES):
        return text
    out, last = [], 0
    for m in _BRACKET_CORE.finditer(text):
        if m.start() < last:  # in the whitespace taken after the previous core (cannot be: cores start with a bracket)
            continue
        end = m.end()
        while end < len(text) and text[end].isspace():
            end += 1
        out += (text[last:_space_before(text, m.start(), last)], ".")
        last = end
    out.append(text[last:])
    return "".join(out)


def _loose_dots(text: str) -> str:
    """``_LOOSE_DOT.sub(".", text)``: "dot" with whitespace before it, or "." with whitespace on a side."""
    word = "dot" in text and _DOT_WORD_CORE.search(text) is not None
    spaced = "." in text and _SPACED_DOT_CORE.search(text) is not None
    if not (word or spaced):
        return text
    cores = []
    if word:
        cores += [(m.start(), m.end(), True) for m in _DOT_WORD_CORE.finditer(text)]
    if spaced:
        cores += [(m.start(), m.end(), False) for m in _SPACED_DOT_CORE.finditer(text)]
    out, last = [], 0
    for start, end, word in sorted(cores):
        before = _space_before(text, start, last)
        if before < start or (not word and end - start > 1):
            out += (text[last:before], ".")
            last = end
    if not out:
        return text
    out.append(text[last:])
    return "".join(out)


def repair_dots(text: str) -> str:
    """Spelled-out links and words put back together (lower-cased text): bracketed dots to ".",
    spelled-out runs joined, then written-out and spaced dots before a top-level domain to "."."""
    return _loose_dots(join_spelled(_bracket_dots(text)))


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

    Built so that the compiled kernels agree exactly with str.split(), the regex ``\\w``,
    str.isalpha() and str.isupper(). Also IGNORABLE, MARK and FOLD, from the tables of the
    disguise-undoing steps. Building takes ~0.1 s, a tenth of a small scoring run's start-up, so
    the table is kept beside the compiled kernels (``__pycache__``), under a name that changes
    with the Unicode database and the sources it is built from; an unwritable cache only means
    building it each time.
    """
    cache = _flags_cache_path()
    try:
        flags = np.load(cache, allow_pickle=False)
        if flags.shape == (FLAG_TABLE_SIZE,) and flags.dtype == np.uint8:
            flags.setflags(write=False)
            return flags
    except (OSError, ValueError):
        pass
    flags = _build_char_flags()
    try:
        cache.parent.mkdir(exist_ok=True)
        tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            np.save(fh, flags, allow_pickle=False)
        os.replace(tmp, cache)
    except OSError:
        pass
    return flags


def _flags_cache_path() -> Path:
    here = Path(__file__).resolve().parent
    digest = hashlib.sha256(unicodedata.unidata_version.encode())
    for source in ("text.py", "_kernels.py"):
        digest.update((here / source).read_bytes())
    return here / "__pycache__" / f"char_flags.{digest.hexdigest()[:16]}.npy"


def _build_char_flags() -> np.ndarray:
    chars = np.arange(FLAG_TABLE_SIZE, dtype=np.uint32).tobytes().decode("utf-32-le", "surrogatepass")
    flags = np.zeros(FLAG_TABLE_SIZE, dtype=np.uint8)
    for bit, predicate in ((K.SPACE, str.isspace), (K.ALPHA, str.isalpha), (K.UPPER, str.isupper),
                           (K.WORD, str.isalnum)):
        flags[np.fromiter(map(predicate, chars), dtype=bool, count=FLAG_TABLE_SIZE)] |= bit
    flags[ord("_")] |= K.WORD  # regex \w is str.isalnum() or "_" (the tests check every code point)
    for bit, ranges in ((K.IGNORABLE, IGNORABLE_RANGES), (K.MARK, MARK_RANGES), (K.FOLD, _ranges("".join(ALWAYS_FOLD))),
                        (K.LATIN, _ranges(string.ascii_letters + string.digits))):
        for a, b in ranges:
            flags[a:min(b, FLAG_TABLE_SIZE - 1) + 1] |= bit
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


def _bare_domains(text: str) -> str:
    """``_URL.sub(URL_TOKEN, text)`` for a text without "http" and "www".

    Then only _URL's last alternative (a bare domain) can match, and it has no whitespace and
    contains a _TLD_HINT match: the substitution runs on the whitespace-free chunks around those
    only (on a whole long comment it tries the pattern at every word, ~50 us per 1,000 characters).
    """
    out, last = [], 0
    for hint in _TLD_HINT.finditer(text):
        if hint.start() < last:
            continue
        start, end = hint.start(), hint.end()
        while start > last and not text[start - 1].isspace():
            start -= 1
        while end < len(text) and not text[end].isspace():
            end += 1
        out += (text[last:start], _URL.sub(URL_TOKEN, text[start:end]))
        last = end
    if not out:
        return text
    out.append(text[last:])
    return "".join(out)


def _replace_links(text: str) -> str:
    if any(word in text for word in _SHORTENER_WORDS):
        text = _SHORTENER.sub(SHORT_URL_TOKEN, text)
    if "http" in text or "www" in text:
        text = _URL.sub(URL_TOKEN, text)
    elif "." in text:
        text = _bare_domains(text)
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
    if not text.isascii():
        text = fold_unicode(text)  # first: invisible characters inside a tag would keep it from matching
    if "<" in text:
        text = _TAG.sub(" ", text)
    caps = _mostly_caps(text)
    text = repair_dots(text.lower())
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
