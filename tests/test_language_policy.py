"""Fail safe on what the model cannot read: comments in languages the model was not trained on, or
that the policy does not trust it with, are never auto-approved."""

from __future__ import annotations

from pathlib import Path

import pytest

import modclf
from modclf.policy import DEFAULT_POLICY_PATH, PolicyError, load_policy, parse_policy

# Our own sentences: a denial, written natively in each language (not from any evaluation file).
DENIALS = {
    "es": "Esto es mentira, el ejército nunca entró en la ciudad, lo vi con mis propios ojos.",
    "de": "Das ist doch gelogen, die Armee ist nie in die Stadt gekommen, ich war selbst dort.",
    "ru": "Это ложь, армия никогда не входила в город, я сам там был и всё видел.",
    "ar": "هذا كذب واضح، الجيش لم يدخل المدينة أبدا وأنا كنت هناك بنفسي",
    "fr": "C'est faux, l'armée n'est jamais entrée dans la ville, j'y étais moi-même.",
    "tr": "Bu tamamen yalan, ordu şehre hiç girmedi, ben oradaydım ve gördüm.",
    "pt": "Isso é mentira, o exército nunca entrou na cidade, eu estava lá e vi tudo.",
    "it": "Questa è una bugia, l'esercito non è mai entrato in città, io c'ero e ho visto tutto.",
}


@pytest.fixture(scope="module")
def moderator(model_dir: Path):
    return modclf.load(model_dir)


def test_model_records_the_languages_it_was_trained_on(moderator) -> None:
    languages = moderator.model.artifact.meta["languages"]
    assert "en" in languages["supported"] and languages["counts"]["en"] > 10_000
    assert all(languages["counts"][lang] >= languages["min_rows"] for lang in languages["supported"])


def test_comments_in_other_languages_are_never_approved(moderator) -> None:
    verdicts = moderator.classify(list(DENIALS.values()))
    for (lang, _), verdict in zip(DENIALS.items(), verdicts):
        assert verdict.language == lang, (lang, verdict)
        assert verdict.action != "approve", (lang, verdict)


def test_languages_outside_the_policy_list_are_held(moderator) -> None:
    shipped = load_policy(DEFAULT_POLICY_PATH)
    assert shipped.languages is not None and "en" in shipped.languages
    for lang in DENIALS:
        if lang not in shipped.languages or lang not in moderator.model.supported_languages:
            assert "unsupported_language" in moderator.conditions(False, lang), lang
    assert moderator.conditions(False, "en") == ()
    assert moderator.conditions(False, "und") == ()  # too short to tell: judged on its text alone


def test_an_open_policy_trusts_every_trained_language(moderator) -> None:
    open_policy = parse_policy({"labels": {"other": [{"at_least": 0.0, "action": "approve"}]}})
    m = modclf.Moderator(moderator.model, open_policy)
    for lang in moderator.model.supported_languages:
        assert m.conditions(False, lang) == ()
    assert m.conditions(False, "pt") == ("unsupported_language",) or "pt" in moderator.model.supported_languages


def test_policy_languages_are_validated() -> None:
    with pytest.raises(PolicyError, match="languages"):
        parse_policy({"labels": {}, "languages": ["english"]})
    with pytest.raises(PolicyError, match="languages"):
        parse_policy({"labels": {}, "languages": "en"})


def test_service_reports_the_language(model_dir: Path) -> None:
    from modclf.serving import create_app

    app = create_app({"model_dir": str(model_dir), "feedback_db": "sqlite://"})
    body = app.test_client().post("/v1/classify", json={"text": DENIALS["es"]}).get_json()
    assert body["language"] == "es" and body["action"] != "approve"


@pytest.mark.parametrize("text,script", [
    ("Нет.", "CYRILLIC"), ("لا", "ARABIC"), ("Non.", "LATIN"), ("ok", "LATIN"), ("😂😂", None), ("+1 !!", None),
    ("Ναι", "GREEK"), ("はい", "CJK"), ("Hayır.", "LATIN"), ("ok да да да", "CYRILLIC"),
])
def test_dominant_script(text: str, script: str | None) -> None:
    from modclf.language import dominant_script

    assert dominant_script(text) == script


def test_short_comments_in_an_untrusted_script_are_held(moderator) -> None:
    """Too short to identify, but not in a trusted language's script: never judged on text alone."""
    assert moderator.trusted_languages == frozenset({"en"})  # the shipped policy
    assert moderator.conditions(False, "und", "CYRILLIC") == ("unsupported_language",)
    assert moderator.conditions(False, "und", "ARABIC") == ("unsupported_language",)
    assert moderator.conditions(False, "und", "LATIN") == ()
    assert moderator.conditions(False, "und", None) == ()
    for text in ("Нет.", "Да!", "لا", "كذب"):
        verdict = moderator.classify([text])[0]
        assert verdict.language == "und" and verdict.action != "approve", (text, verdict)
    trusting_ru = parse_policy({"labels": {"other": [{"at_least": 0.0, "action": "approve"}]}, "languages": ["en", "ru"]})
    m = modclf.Moderator(moderator.model, trusting_ru)
    assert m.conditions(False, "und", "CYRILLIC") == ()
    assert m.conditions(False, "und", "ARABIC") == ("unsupported_language",)


def test_multilingual_validation_set_is_never_approved_when_misread(moderator) -> None:
    """Issue 13's language target on the project's own multilingual set (data/validation.csv, 25
    comments per language in ar, de, es, fr, ru, tr): no comment is auto-approved unless the
    model was trained on its language and read its label correctly."""
    import csv

    root = Path(__file__).resolve().parent.parent
    with (root / "data" / "validation.csv").open(newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["lang"] != "en"]
    assert {r["lang"] for r in rows} >= {"ar", "de", "es", "fr", "ru", "tr"}
    verdicts = moderator.classify([r["text"] for r in rows])
    for row, verdict in zip(rows, verdicts):
        if verdict.action == "approve":
            assert row["lang"] in moderator.model.supported_languages, (row["id"], verdict)
            assert verdict.label == row["label"], (row["id"], row["label"], verdict)


# English around a part in another language: identification of the whole comment reads English (or
# cannot tell, in Latin letters), so each part is also identified on its own (found by an attack on
# the service: these were approved on every path).
ENGLISH = "Thanks for the great article, I really enjoyed reading it and I agree with most of the points made here."
MIXED = {
    "ru": f"{ENGLISH} {DENIALS['ru']} {ENGLISH}",
    "ru, no punctuation": f"{ENGLISH} Ты идиот и твоя статья полный бред автор дебил {ENGLISH}",
    "de": f"{ENGLISH} {DENIALS['de']}",
    "tr": f"{ENGLISH[:-1]} {DENIALS['tr'].replace(',', '')}",
    "es, a plug": f"{ENGLISH} Mi canal de YouTube tiene videos sobre esto, suscríbete.",
}


@pytest.mark.parametrize("name", list(MIXED))
def test_a_part_in_an_untrusted_language_keeps_the_comment_from_approval(moderator, name: str) -> None:
    verdict = moderator.classify([MIXED[name]])[0]
    assert verdict.action != "approve", (name, verdict)
    assert moderator.foreign_part(MIXED[name]) is not None
    assert moderator.classify([ENGLISH])[0].action == "approve"  # the English alone is approvable


@pytest.mark.parametrize("word, script", [("syriamp3.\ua4dar", "LISU"), ("\u13dfheck", "CHEROKEE"),
                                          ("syriamp3.\u2ca5\u2c9f\u2c99", "COPTIC"), ("\u03a1utin", "GREEK")])
def test_a_word_mixing_latin_with_another_script_is_a_foreign_part(moderator, word: str, script: str) -> None:
    """A single look-alike letter of a script no trusted language uses, inside a Latin word (below the
    letter count that makes a comment foreign): no language writes a word so, a disguise does."""
    text = f"Heartbreaking report from Aleppo, the songs are on {word} if anyone wants them."
    assert moderator.foreign_part(text) == script
    assert moderator.classify([text])[0].action != "approve"
    assert moderator.foreign_part("Caf\u00e9 au lait in Z\u00fcrich, na\u00efve but fine.") is None  # Latin letters


def test_english_comments_seldom_have_a_foreign_part(moderator) -> None:
    """Of the 1,125 validation comments identified as English as a whole, one has a part in another
    language (an English blessing followed by the same in Arabic, rightly held): the check does not
    hold English comments for nothing."""
    import pandas as pd

    from .conftest import ROOT

    texts = pd.read_csv(ROOT / "data" / "validation.csv")["text"].tolist()
    english = [t for t, v in zip(texts, moderator.classify(texts)) if v.language == "en"]
    assert len(english) >= 1000
    assert sum(moderator.foreign_part(t) is not None for t in english) <= 3
