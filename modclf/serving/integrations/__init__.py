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
from html.parser import HTMLParser
from typing import Any, Mapping

from ...policy import Policy

log = logging.getLogger(__name__)


__all__ = ["spam_signal", "dispute_signal", "plain_text"]

#: Tags of the rich text comment platforms send (Coral's editor, WordPress comments). A body with
#: none of them is taken as plain text, so "a<b" or "<3" in a plain comment is left alone.
_HTML_TAG = re.compile(r"</?(?:a|b|i|u|s|em|strong|br|p|div|span|blockquote|ul|ol|li|strike|code|pre|mark|sub|sup)\b[^<>]{0,500}>",
                       re.IGNORECASE)
_BLOCK_TAGS = {"br", "p", "div", "blockquote", "li", "ul", "ol", "pre"}


class _TextAndLinks(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")
        self.links.extend(v for k, v in attrs if k == "href" and v)

    def handle_endtag(self, tag: str) -> None:
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def plain_text(body: str) -> str:
    """The text a moderator reads, for an HTML comment body: tags removed, entities decoded, and
    link targets kept (appended when the anchor text does not show them), since a link drop hidden
    behind innocent anchor text is exactly the spam the model must see."""
    if not _HTML_TAG.search(body):
        return body
    parser = _TextAndLinks()
    parser.feed(body)
    parser.close()
    text = "".join(parser.parts).strip()
    hidden = [link for link in dict.fromkeys(parser.links) if link not in text]
    return "\n".join([text, *hidden]) if hidden else text


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
