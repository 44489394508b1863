"""modclf.window: the bounded window of over-long comments and the link/contact sentences read apart."""

from __future__ import annotations

import pytest

from modclf.window import CUE_CONTEXT, TIGHT_CONTEXT, bounded_window, cue_stretches


def test_the_sentence_with_the_link_is_read_apart() -> None:
    text = ("We rented to the same family for nine years. They paid on time.\n\n"
            "Buy cheap pills at http://pills-shop.com now! Anyway, good article.")
    assert cue_stretches(text) == ["Buy cheap pills at http://pills-shop.com now!"]
    # the dot of a domain does not end a sentence; ". " and a line break do
    assert cue_stretches("Great read. see bestcasino.com for spins") == ["see bestcasino.com for spins"]


@pytest.mark.parametrize("text", [
    "Check out my site bestcasino.com for free spins",  # the whole comment: read whole anyway
    "A long comment about rent, tenants and the housing minister, with no link in it at all. " * 5,
    "Love this channel, I download every episode.",  # words are not links: ordinary talk under a video
    "",
])
def test_no_stretch_without_a_part_to_read_apart(text: str) -> None:
    assert cue_stretches(text) == []


def test_contacts_count_and_neighbouring_cues_merge() -> None:
    text = "Nice piece. For loans WhatsApp me +1 555 0100 or mail loans@cash.biz today. Back to the topic."
    assert cue_stretches(text) == ["For loans WhatsApp me +1 555 0100 or mail loans@cash.biz today."]


def test_a_stretch_is_bounded_around_its_cue_and_read_again_tighter() -> None:
    words = "word " * 100
    text = words + "visit pills-shop.com " + words
    wide, tight = cue_stretches(text)
    assert "pills-shop.com" in wide and len(wide) <= len("pills-shop.com") + 2 * CUE_CONTEXT + 2
    assert "pills-shop.com" in tight and len(tight) <= len("pills-shop.com") + 2 * TIGHT_CONTEXT + 2
    assert not tight.startswith("ord") and not tight.endswith("wor")  # whole words


@pytest.mark.parametrize("plug", ["Sub to me, I sub back.", "follow @bestdeals_2024 on insta for giveaways",
                                  "call me at five five five, zero one zero zero", "Search my name on YouTube."])
def test_self_promotion_without_a_link_is_a_cue(plug: str) -> None:
    text = "The minister kept repeating the same talking points about the budget. " + plug
    assert plug.rstrip(".") in " ".join(cue_stretches(text))


def test_an_anchor_gives_its_text_and_its_target() -> None:
    text = 'I agree with the column. <a href="http://fastcash.example">cheap <b>loans</b></a> and more.'
    assert "cheap loans http://fastcash.example" in cue_stretches(text)


def test_stretches_are_limited() -> None:
    text = " ".join(f"Sentence {i} links site{i}.com here." for i in range(100))
    assert len(cue_stretches(text, limit=5)) == 5


def test_bounded_window_keeps_short_text_and_cuts_long_text() -> None:
    assert bounded_window("short", 100) == ("short", False)
    long = "a" * 5000 + " visit pills-shop.com " + "b" * 5000
    window = bounded_window(long, 1000)
    assert window.truncated and len(window.text) <= 1000 and "pills-shop.com" in window.text


def test_a_link_line_alone_holds_but_never_rejects(model_dir) -> None:
    """The cue stretch can only hold a comment the whole reading approves (CUE_ACTION), never reject it."""
    import modclf
    from modclf.moderator import CUE_ACTION

    moderator = modclf.load(model_dir)
    benign = ("I rented to the same family for nine years and they paid on time every month. When they "
              "left they cleaned the flat better than they found it, and we still exchange cards at Christmas. "
              "Good tenants exist, and so do good landlords; the column paints both with one brush.")
    assert moderator.classify([benign])[0].action == "approve"
    plug = "Best prices on pills at http://pills-shop.com today!"
    verdict = moderator.classify([benign + "\n\n" + plug])[0]
    assert CUE_ACTION == "review" and verdict.action == "review"
