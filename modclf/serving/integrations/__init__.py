"""Moderation-queue integrations: Coral's external moderation phase (:mod:`.coral`) and an
Akismet-compatible API (:mod:`.akismet`), registered by :func:`modclf.serving.create_app` when
their secrets are set (``CORAL_SIGNING_SECRET``, ``AKISMET_API_KEYS``; an integration without its
secret is not installed at all, 404, rather than installed open).

Both translate the same verdict with the same two signals (see README, "Integrations"):
:func:`spam_signal` (the top label is spam, or p(spam) reached a spam escalation of the policy) and
:func:`dispute_signal` (the top label is dispute, or p(dispute) reached a dispute escalation), and
:func:`plain_text` turns the HTML bodies platforms send into the text a moderator reads.
"""

from __future__ import annotations

import logging
import re
import html
from typing import Any, Mapping

from ...policy import Policy

log = logging.getLogger(__name__)


__all__ = ["spam_signal", "dispute_signal", "plain_text"]

#: Tags of the rich text comment platforms send (Coral's editor, WordPress comments). A body with
#: none of them is taken as plain text, so "a<b" or "<3" in a plain comment is left alone.
#: So is any tag with an attribute a reader sees or follows: WordPress lets visitors use <abbr title>,
#: <acronym title>, <q cite>, and other clients allow <img alt>; their tooltips are text a plug hides in.
_HTML_TAG = re.compile(r"</?(?:a|b|i|u|s|em|strong|br|p|div|span|blockquote|ul|ol|li|strike|code|pre|mark|sub|sup|"
                       r"abbr|acronym|q|cite|del|ins)\b[^<>]{0,500}>|"
                       r"<[a-z][a-z0-9]*\s[^<>]{0,500}?\b(?:href|title|alt|src)\s*=[^<>]{0,500}>",
                       re.IGNORECASE)
_BLOCK_TAGS = {"br", "p", "div", "blockquote", "li", "ul", "ol", "pre"}


#: Attributes whose values a reader can see or follow (a tooltip, an image's alt text, a link target).
_SHOWN_ATTRIBUTES = re.compile(r"""\b(href|title|alt|src)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""", re.IGNORECASE)
_TAG_NAME = re.compile(r"/?([a-zA-Z][a-zA-Z0-9]*)")
#: At most this many hidden pieces (link targets, attribute texts, HTML comments) are appended: the
#: model reads a bounded window anyway, and each is looked for in the text once.
MAX_HIDDEN_PARTS = 64
#: Markup beyond this many characters is not parsed (see plain_text).
MAX_MARKUP_CHARS = 100_000


def _markup(body: str) -> tuple[list[str], list[str], list[str]]:
    """(text parts, link targets, hidden texts) of an HTML body, in one left-to-right pass.

    Written with str.find instead of html.parser: CPython 3.11's parser is quadratic on repeated
    unclosed tags (a 30 KB comment of "<a " took 12 s, long enough for Coral to publish unjudged)
    and raises on "<![x" (a 500, which platforms read as "no opinion"). Here every "<" is looked at
    once, and the next ">" and "-->" are remembered, so a body costs time linear in its length.
    A "<" that does not open a tag, a comment or a declaration is text.
    """
    parts: list[str] = []
    links: list[str] = []
    hidden: list[str] = []
    n, i, last = len(body), 0, 0
    next_gt = next_close = -2  # -2: not looked for yet; -1: none left
    while True:
        lt = body.find("<", i)
        if lt < 0:
            break
        if body.startswith("<!--", lt):
            if next_close != -1 and next_close < lt + 4:
                next_close = body.find("-->", lt + 4)
            end = next_close if next_close >= 0 else n
            parts.append(body[last:lt])
            hidden.append(body[lt + 4:end])
            i = last = min(n, end + 3)
            continue
        if next_gt != -1 and next_gt < lt:
            next_gt = body.find(">", lt)
        if next_gt < 0:
            break  # no ">" left: the rest is text
        inner = body[lt + 1:next_gt]
        if "<" in inner:
            i = lt + 1  # "a < b and <b>": this "<" is text
            continue
        name = _TAG_NAME.match(inner)
        if inner[:1] in ("!", "?"):
            parts.append(body[last:lt])
            hidden.append(inner[1:])
        elif name is not None:
            parts.append(body[last:lt])
            if name.group(1).lower() in _BLOCK_TAGS:
                parts.append("\n")
            for attribute in _SHOWN_ATTRIBUTES.finditer(inner) if "=" in inner else ():
                value = next(v for v in attribute.groups()[1:] if v is not None)
                (links if attribute.group(1).lower() in ("href", "src") else hidden).append(value)
        else:
            i = lt + 1
            continue
        i = last = next_gt + 1
    parts.append(body[last:])
    return parts, links, hidden


def plain_text(body: str) -> str:
    """The text a moderator reads, for an HTML comment body: tags removed, entities decoded, and
    what the markup hides appended (link targets the anchor text does not show, tooltips and alt
    texts, HTML comments and declarations), since a link drop behind innocent anchor text, or
    spam inside "<!-- -->" of a comment shown as plain text, is exactly what the model must see."""
    if not _HTML_TAG.search(body):
        return body
    if len(body) > MAX_MARKUP_CHARS:
        # ten times the model's window: judged as it is (a 1 MB body of tags would take most of a
        # second to parse), and so held as truncated, never approved, whatever its markup hides
        return body
    parts, links, hidden = _markup(body)
    text = html.unescape("".join(parts)).strip()
    extra: list[str] = []
    for piece in dict.fromkeys([*links, *hidden]):
        piece = " ".join(html.unescape(piece).split())
        if piece and piece not in text and piece not in extra:
            extra.append(piece)
            if len(extra) >= MAX_HIDDEN_PARTS:
                break
    return "\n".join([text, *extra]) if extra else text


def _label_signal(label: str, result: Mapping[str, Any], policy: Policy) -> bool:
    if result["label"] == label:
        return True
    p = result["probabilities"].get(label, 0.0)
    return any(e.label == label and p >= e.at_least for e in policy.escalations)


def spam_signal(result: Mapping[str, Any], policy: Policy) -> bool:
    """Spam is why this prediction is not simply approved (or it is the top label)."""
    return _label_signal("spam", result, policy)


def dispute_signal(result: Mapping[str, Any], policy: Policy) -> bool:
    """Dispute (attack, denial, mockery) is the top label or reached a dispute escalation."""
    return _label_signal("dispute", result, policy)
