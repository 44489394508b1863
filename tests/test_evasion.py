"""Disguised link drops must still be held: look-alike letters, invisible characters, spelled-out links.

Unit tests pin what normalize_text makes of each disguise (and what it must leave alone: Russian,
Greek, accented text, lists of numbers, English that mentions a dot). The model tests disguise a
seeded sample of the corpus's spam with modclf.evasion, exactly as bench/evasion_report.py does
over the whole corpus, and check that the policy still does not approve them.

Measured with bench/evasion_report.py on all 2,187 spam rows of the corpus (20,974 rows, policy.yaml),
every comment decided as the service decides it: the share of variants not approved among those
whose original is not approved is 1.000 for every kind except padding, 0.893 (read whole: 0.014;
the Moderator also reads long comments in segments and sentences with a link or contact on their
own, which holds most of them; before the disguises were undone: 0.80 for look-alikes and enclosed
letters, 0.92-0.99 for the others). The thresholds below
leave room for a different sample and corpus.
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import pytest

from modclf import evasion as E
from modclf.text import normalize_text

from .conftest import DATA

# ---------------------------------------------------------------- normalize_text, per disguise


@pytest.mark.parametrize("disguised, plain", [
    # look-alike letters: Cyrillic, Greek, Armenian, Latin small capitals, Roman numerals, letterlike symbols
    ("Сheар Wiηԁօωѕ 10 Ρгօ kеуѕ", "cheap windows 10 pro keys"),
    ("ԝԝԝ.ѕіtе.соm", "zzurl"),
    ("Ьuу ⅽһеар ꜱᴛᴜꜰꜰ ɑt mу ѕіtе", "buy cheap stuff at my site"),
    ("Visit сору now", "visit copy now"),  # a word of look-alikes only, in a Latin comment
    ("ϲℎеϲк ⅰt", "check it"),
])
def test_lookalikes(disguised: str, plain: str) -> None:
    assert normalize_text(disguised) == plain


@pytest.mark.parametrize("disguised, plain", [
    ("ｗｗｗ．ｃｈｅａｐ－ｐｉｌｌｓ．ｃｏｍ", "zzurl"),  # fullwidth
    ("ｂｕｙ\u3000ｎｏｗ", "buy now"),  # with an ideographic space
    ("𝐛𝐮𝐲 𝐧𝐨𝐰 𝔣𝔯𝔢𝔢 𝟏𝟎𝟎", "buy now free 100"),  # mathematical bold, fraktur, digits
    ("𝕔𝕙𝕖𝕒𝕡-𝕡𝕚𝕝𝕝𝕤.𝕔𝕠𝕞", "zzurl"),  # double-struck
    ("ⓦⓦⓦ.ⓢⓘⓣⓔ.ⓒⓞⓜ", "zzurl"),  # circled
    ("🅵🆁🅴🅴 ➊⓿⓿⓿ 🅐🅟🅟", "free 100 app"),  # negative squared and circled letters and digits (runs cut to two)
    ("call 1\ufe0f\u20e32\ufe0f\u20e33\ufe0f\u20e3", "call 123"),  # keycap digits
])
def test_compatibility_forms(disguised: str, plain: str) -> None:
    assert normalize_text(disguised) == plain


@pytest.mark.parametrize("invisible", ["\u200b", "\u200c", "\u200d", "\u200e", "\u200f", "\u2060", "\u2062", "\ufeff",
                                       "\u00ad", "\u034f", "\u180e", "\ufe0f", "\ufe00", "\U000e0100", "\u202d",
                                       "\u2066", "\u061c", "\U000e0041", "\U000e0020", "\u0600", "\u06dd", "\ufff9",
                                       "\U00013430", "\u070f"])
def test_invisible_characters(invisible: str) -> None:
    assert normalize_text(f"b{invisible}u{invisible}y n{invisible}{invisible}ow") == "buy now"
    assert normalize_text(f"site{invisible}.com") == "zzurl"


def test_combining_marks_over_latin_letters() -> None:
    assert normalize_text("b\u0336\u032eu\u1dc4y c\u0301h\u0308e\u0327a\u0303p") == "buy cheap"
    # marks of any script, not only the Latin diacritics (Devanagari, Vedic, kana, musical symbols)
    assert normalize_text("syriamp3.c\u0951o\u1cd0m s\u3099a\U0001d167le") == "zzurl sale"
    assert normalize_text("ś̸i̴t̷e̶.c̵o̷m̶") == "zzurl"
    assert normalize_text("café déjà vu, naïve") == "cafe deja vu, naive"  # Latin accents go with them


@pytest.mark.parametrize("disguised, plain", [
    ("w w w . s i t e . c o m", "zzurl"),
    ("visit s i t e . c o m now", "visit zzurl now"),
    ("F R E E  M O N E Y here", "free money here"),  # the wider gap stays a space
    ("c-h-e-a-p p.i.l.l.s", "cheap pills"),
    ("s_i_t_e", "site"),
    ("c|h|e|a|p s*t*u*f*f", "cheap stuff"),
    ("m-e-g-a-v-a-u-l-t.r-u/d/8-8-2-3", "zzurl"),  # separators that spell go, the others stay
    ("s-i-t-e.r-u/d/1-2", "zzurl"),
    ("h t t p s : / / fl-free-dl . site", "zzurl . site"),
])
def test_spelled_out(disguised: str, plain: str) -> None:
    assert normalize_text(disguised) == plain


@pytest.mark.parametrize("disguised, plain", [
    ("visit keyzshop24 [.] com", "visit zzurl"),
    ("site (.) com/offer", "zzurl"),
    ("site{dot}xyz", "zzurl"),
    ("site ( dot ) net", "zzurl"),
    ("cheap-meds . com", "zzurl"),
    ("site dot xyz", "zzurl"),
    ("bit dot ly/abc", "zzurl zzshorturl"),
    # a third attack: the dot as another word or a spaced symbol, fused or spelled
    ("more here: syriamp3 punto com", "more here: zzurl"), ("syriamp3 punkt net", "zzurl"),
    ("syriamp3 period com", "zzurl"), ("syriamp3 point com", "zzurl"), ("syriamp3 dawt com", "zzurl"), ("syriamp3 d0t c0m", "zzurl"),
    ("syriamp3 \u2022 com", "zzurl"), ("syriamp3 \U0001f539 com", "zzurl"), ("syriamp3 / com", "zzurl"),
    ("syriamp3 - com", "zzurl"), ("syriamp3 \u2022 org", "zzurl"), ("syriamp3dotcom", "zzurl"), ("syriamp3 .c.o.m", "zzurl"), ("syriamp3.c om", "zzurl"),
    ("kontakt: weber punkt net", "kontakt: zzurl"), ("sitemiz avrupavize nokta com", "sitemiz zzurl"),
    # a fourth attack: other languages' words for the dot, wrapped or spelled, spaced look-alike dots
    ("syriamp3 ponto com", "zzurl"), ("syriamp3 kropka com", "zzurl"), ("syriamp3 titik net", "zzurl"),
    ("syriamp3 d.o.t com", "zzurl"), ("syriamp3 d o t com", "zzurl"), ("syriamp3-dot-com", "zzurl"),
    ("syriamp3, punto, com", "zzurl"), ("syriamp3 (punto) com", "zzurl"), ("syriamp3 \u00b7 com", "zzurl"),
    ("syriamp3 \u3002 com", "zzurl"), ("syriamp3 \u2605 net", "zzurl"), ("syriamp3 , com", "zzurl"),
    ("syriamp3 punto io", "zzurl"), ("syriamp3 dawt top", "zzurl"),
])
def test_dot_words(disguised: str, plain: str) -> None:
    assert normalize_text(disguised) == plain


@pytest.mark.parametrize("disguised, plain", [
    # bare domains under top-level domains beyond the common ones, written as a domain
    ("girls are waiting for you at syriangirls.vip", "girls are waiting for you at zzurl"),
    ("all the songs: tiny.one/syriamp3", "all the songs: zzurl"),
    ("SYRIAMP3.TO", "zzurl zzcaps"),
    ("visit dubai-prime-homes.ae today", "visit zzurl today"),
    # dots that are not a full stop, a leet top-level domain, percent-escapes
    ("on syriamp3\u3002com if anyone wants", "on zzurl if anyone wants"),
    ("syriamp3\u00b7com", "zzurl"), ("syriamp3\u06d4com", "zzurl"), ("syriamp3\u2e33com", "zzurl"),
    ("syriamp3,com", "zzurl"), ("syriamp3_com", "zzurl"), ("5yr14ng1rl5.c0m", "zzurl"), ("cashnow\u3002ly/x", "zzurl"),
    ("syriamp3%2Ecom", "zzurl"), ("%73%79%72%69%61%6D%70%33%2E%63%6F%6D", "zzurl"),
    # a link stored backwards behind a right-to-left override shows forwards, so it reads forwards
    ("Great piece. \u202emoc.3pmairys.www ta sgnos eerF\u202c", "great piece. free songs at zzurl"),
    # inline HTML tags and HTML comments inside a word join it; block tags separate words
    ("syriamp3.c<abbr></abbr>om", "zzurl"), ("syriamp3.c<!---->om", "zzurl"), ("one<br>two<p>three", "one two three"),
    # hooked and stroked Latin letters, regional-indicator letters, digits of other scripts
    ("H\u00f8\u01ad Syrian \u0260\u0268\u024d\u0142\u0282", "hot syrian girls"),
    ("C\u0266\u0247\u0188\u0199 out my \u0188\u0266\u2c65\u0272\u0272\u0247\u0142", "check out my channel"),
    ("\U0001f1f8\u200b\U0001f1fe\u200b\U0001f1f7\U0001f1ee\U0001f1e6mp3.to", "zzurl"),
    ("loans: +\u0669\u0666\u0663 \u0669\u0664\u0664 \u0661\u0662\u0663 \u0664\u0665\u0666", "loans: zzphone"),
    ("loans: +963\u2022944\u2022123\u2022456", "loans: zzphone"),
    ("money abroad, what's app me: +963/944/123/456", "money abroad, what's app me: zzphone"),
])
def test_more_link_disguises(disguised: str, plain: str) -> None:
    assert normalize_text(disguised) == plain


@pytest.mark.parametrize("text", [
    "at this point, com and net are both taken", "income - net of tax", "a / b and c / d", "the period after the war",
    "point blank", "ru: the Russian code", "at this point net migration is down", "the safety - net is gone",
    "el punto de vista", "desde el punto me parece", "a punt to the end zone", "polka dot top", "the dot to the right",
])
def test_dot_words_left_alone(text: str) -> None:
    assert "zzurl" not in normalize_text(text)


@pytest.mark.parametrize("text, expected", [
    # a missing space after a full stop is not a domain, nor are abbreviations, numbers and snake_case
    ("They own two houses themselves.so of course", "they own two houses themselves.so of course"),
    ("It ends.It was bad.To be fair", "it ends.it was bad.to be fair"),
    ("e.g. the U.S. and i.e. version 2.0, 1,000 dollars", "e.g. the u.s. and i.e. version 2.0, 1,00 dollars"),  # (runs cut to two)
    ("the snake_case name, we,com", "the snake_case name, we,com"),
    ("100% sure, 50%off", "100% sure, 50%off"),
    ("in 2012 and 2013", "in 2012 and 2013"),
    ("from 12/03/2015 to 14/03/2015", "from 12/03/2015 to 14/03/2015"),  # dates: no "+" before them
])
def test_not_domains(text: str, expected: str) -> None:
    assert normalize_text(text) == expected


@pytest.mark.parametrize("text, expected", [
    # real Russian, Ukrainian and Greek keep their letters, also next to English
    ("Спасибо за честный репортаж. I'm from Kharkiv", "спасибо за честный репортаж. i'm from kharkiv"),
    ("Glory to the heroes, слава Україні", "glory to the heroes, слава україні"),
    ("Он тот", "он тот"),
    ("Ελληνικά κείμενα εδώ και εκεί", "ελληνικά κείμενα εδώ και εκεί"),
    # letters and digits on their own that are not a spelled-out word
    ("1, 2, 3, 4, 5", "1, 2, 3, 4, 5"),
    ("Plan A, B or C?", "plan a, b or c?"),
    ("the score was 3 - 1 - 0 - 2", "the score was 3 - 1 - 0 - 2"),
    # a dot in prose is not a link
    ("That is the end. Net migration is up.", "that is the end. net migration is up."),
    ("the dot com boom", "the zzurl boom"),  # as before: "dot com" is the link marker
])
def test_left_alone(text: str, expected: str) -> None:
    assert normalize_text(text) == expected


# ---------------------------------------------------------------- the generator


def _corpus() -> tuple[list[str], list[str]]:
    df = pd.read_csv(DATA, dtype=str, keep_default_na=False)
    return (df.loc[df["label"] == "spam", "text"].tolist(),
            df.loc[df["label"].isin(["other", "support"]), "text"].tolist())


def test_variants_are_deterministic_per_row() -> None:
    spam, benign = _corpus()
    rows = [0, 5, 17]
    full = [v for v in E.variants(spam[:20], benign, seed=3) if v.row in rows]
    assert full == list(E.variants(spam[:20], benign, seed=3, rows=rows))
    assert full != list(E.variants(spam[:20], benign, seed=4, rows=rows))
    assert {v.kind for v in full} >= set(E.KINDS) - {"dot_words"}
    padded = [v.text for v in full if v.kind == "padding"]
    assert all(1000 <= len(t) <= 9000 for t in padded)


# ---------------------------------------------------------------- the model and the policy

#: Share of variants not approved, among those whose original is not approved, that each kind must keep.
KEPT = {kind: 0.95 for kind in E.KINDS if kind != "padding"}
#: A link drop buried in 1,000-9,000 characters of benign text: caught by reading long comments in
#: segments (modclf.moderator.SEGMENT_TRIGGER) and the sentences with a link or contact on their own
#: (modclf.window.cue_stretches); read whole, only about 0.01 was held; with segments alone 0.87,
#: with both 0.92 (300 corpus spam rows, seed 0).
KEPT["padding"] = 0.85
SAMPLE = 100


@pytest.fixture(scope="module")
def judged(model_dir) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per kind: (original not approved, variant not approved) for a seeded sample of the corpus's spam,
    decided exactly as the service decides (the Moderator: window, segments, language, policy)."""
    import modclf

    spam, benign = _corpus()
    rows = sorted(np.random.default_rng(0).choice(len(spam), SAMPLE, replace=False).tolist())
    moderator = modclf.load(model_dir)
    generated = list(E.variants(spam, benign, seed=0, rows=rows))

    def blocked(texts: list[str]) -> np.ndarray:
        return np.asarray([v.action != "approve" for v in moderator.classify(texts)])

    originals = dict(zip(rows, blocked([html.unescape(spam[r]) for r in rows])))
    variant_blocked = blocked([v.text for v in generated])
    out = {}
    for kind in E.KINDS:
        idx = [i for i, v in enumerate(generated) if v.kind == kind]
        out[kind] = (np.asarray([originals[generated[i].row] for i in idx]), variant_blocked[idx])
    return out


@pytest.mark.parametrize("kind", sorted(KEPT))
def test_disguised_spam_is_still_held(judged, kind: str) -> None:
    original, variant = judged[kind]
    assert original.mean() >= 0.9 and original.sum() >= 10  # the model holds the undisguised spam
    kept = variant[original].mean()
    assert kept >= KEPT[kind], f"{kind}: {kept:.3f} of {original.sum()} caught originals still held"




#: A plug added to an ordinary comment: with the comment read whole, 16-24 of 60 long corpus comments
#: (400-3,000 characters) got `approve` with each of the first three lines added, 30-55 of 60 with the
#: link-less ones (found by attacks on the service); the sentence with the link, contact or plug is
#: now also read on its own, and an anchor's target is read with its text.
PLUGS = ("Check out my site bestcasino.com for free spins", "For cheap loans WhatsApp me +1 555 0100",
         "Buy cheap viagra at http://pills-shop.com now!",
         # without a link (a second attack): self-promotion, a scam, a phone number in words, an anchor
         "Sub to me, I sub back.", "follow @bestdeals_2024 on insta for giveaways", "Search my name on YouTube.",
         "My account manager Mrs Linda helped me earn 5000 dollars a week, just ask her how.",
         "For cheap loans call me at five five five, zero one zero zero.",
         '<a href="http://fastcash.example">cheap loans</a>')


def test_a_plug_appended_to_an_ordinary_comment_is_not_approved(model_dir) -> None:
    import modclf

    df = pd.read_csv(DATA, dtype=str, keep_default_na=False)
    benign = df[(df["label"] != "spam") & df["text"].str.len().between(400, 3000)].sample(60, random_state=3)["text"]
    moderator = modclf.load(model_dir)
    assert sum(v.action == "approve" for v in moderator.classify(benign.tolist())) >= 20  # approvable alone
    for plug in PLUGS:
        assert moderator.classify([plug])[0].action != "approve"
        for sep in ("\n\n", " ", "start"):
            verdicts = moderator.classify([plug + " " + text if sep == "start" else text + sep + plug for text in benign])
            approved = [v for v in verdicts if v.action == "approve"]
            assert not approved, f"{len(approved)} comments with {plug!r} appended approved"


#: A third attack: link disguises that normalization folds (fullwidth, percent-escapes, invisible
#: characters, a line break before the domain, a dot written as a word) were found only when the link
#: was the whole comment: the sentences read on their own were looked for in the raw text, where
#: none of them shows a cue. They are now also looked for in the normalized text.
FOLDED_PLUGS = ("More here: \uff53\uff59\uff52\uff49\uff41\uff4d\uff50\uff13\uff0e\uff43\uff4f\uff4d",
                "More here: syriamp3%2Ecom", "More here: syriamp3.c\u200bom", "More here: syriamp3\n.com",
                "More here: syriamp3 punto com", "More here: syriamp3 \u2022 com", "More here: syriamp3&#46;com")


@pytest.mark.parametrize("plug", FOLDED_PLUGS)
def test_a_folded_link_appended_to_a_comment_is_not_approved(model_dir, plug: str) -> None:
    import modclf

    df = pd.read_csv(DATA, dtype=str, keep_default_na=False)
    hosts = df[(df["label"].isin(["support", "other"])) & df["text"].str.len().between(40, 250)].sample(
        40, random_state=5)["text"].tolist()
    moderator = modclf.load(model_dir)
    alone = [v.action for v in moderator.classify(hosts)]
    with_plug = [v.action for v in moderator.classify([h + " " + plug for h in hosts])]
    assert alone.count("approve") >= 20
    assert with_plug.count("approve") == 0, [h for h, a in zip(hosts, with_plug) if a == "approve"][:3]


def test_cue_readings_look_in_the_normalized_text() -> None:
    from modclf.window import cue_readings, cue_stretches

    text = "Thanks, that was clear. More here: \uff53\uff59\uff52\uff49\uff41.\uff43\uff4f\uff4d"
    assert cue_stretches(text) == []
    assert cue_readings(text).stretches == ["more here: zzurl"]
    # a plain link is not read twice (raw and normalized)
    assert cue_readings("Thanks, that was clear. More here: syriamp3.com").stretches == ["More here: syriamp3.com"]


@pytest.mark.parametrize("plug", [
    "Loans fast: wechat loanking22", "Loans fast: viber loanking22", "Loans fast, IG loanking22",
    "Loans fast, snap: loanking22", "Loans fast, line id loanking22", "look up Sahel Watch on YT",
    "Quick loans: 1-800-LOAN-NOW", "number is 555 ~ 010 ~ 9999", "number is 555 plus 010 plus 9999",
    "Loans fast, my signal is loanking22", "Loans fast, Session ID 05a8f3c2e1", "Loans fast, my tele is loanking22",
])
def test_messaging_app_contacts_are_cues(plug: str) -> None:
    from modclf.window import cue_readings

    assert cue_readings("The article was fair and the photos were good. " + plug).stretches


def test_more_cue_sentences_than_are_read_hold_the_comment(model_dir) -> None:
    """A fourth attack: 64 short sentences with dates (each a digit-group cue) used up the stretches
    read alone, and a link after them was read only inside the whole comment: 20 of 20 approved."""
    import modclf
    from modclf.window import cue_readings

    dates = " Days the market was shelled: " + " ".join(f"0{d % 9 + 1}/0{d % 9 + 1}/24 again." for d in range(66))
    host = "Thanks, that was a clear explanation of the vote."
    assert cue_readings(host + dates + " syriamp3.com").overflow
    assert not cue_readings(host + " syriamp3.com").overflow
    moderator = modclf.load(model_dir)
    for plug in ("syriamp3.com", "Text me 555 010 9999", "Telegram: syriamp3"):
        assert moderator.classify([host + dates + " " + plug])[0].action != "approve"


@pytest.mark.parametrize("plug", ["Loans fast, my discord is loanking22", "Loans: tele-gram loanking22",
                                  "loans: whatsap +44 7700 900123", "join r/syriamp3_free for the files"])
def test_misspelled_and_other_apps_are_cues(plug: str) -> None:
    from modclf.window import cue_readings

    assert cue_readings("The article was fair and the photos were good. " + plug).stretches
