"""Moderation-queue integrations: Coral's external moderation phase, an Akismet-compatible API, and
the feedback store's HTTP endpoints.

:func:`register_integrations` is called by :func:`modclf.serving.create_app`. What it installs:

- always: ``POST /v1/feedback`` and ``GET /v1/feedback/export`` (store: ``MODCLF_FEEDBACK_DB``,
  default ``sqlite:///feedback.db``);
- when ``CORAL_SIGNING_SECRET`` is set (comma-separated while rotating): ``POST /integrations/coral``;
- when ``AKISMET_API_KEYS`` is set (comma-separated): ``POST /akismet/1.1/{comment-check,
  submit-spam,submit-ham,verify-key}``.

An integration without its secret is not installed at all (404), rather than installed open: an
endpoint that anyone could drive is worse than one that is missing. Each setting can also be given
to ``create_app`` (keys ``feedback_db``, ``coral_signing_secret``, ``akismet_api_keys``).

Both integrations translate the same prediction with the same two signals (see README,
"Integrations"): :func:`spam_signal` (the top label is spam, or p(spam) reached a spam escalation of
the policy) and :func:`dispute_signal` (the top label is dispute, or p(dispute) reached a dispute
escalation).
"""

from __future__ import annotations

import logging
import os
import re
from html.parser import HTMLParser
from typing import Any, Mapping

from flask import Flask

from ..feedback import FeedbackStore, bp as feedback_bp, resolve_db_url
from ..policy import Policy
from ..serving.auth import KeyRing

log = logging.getLogger(__name__)

CORAL_SECRET_ENV = "CORAL_SIGNING_SECRET"
AKISMET_KEYS_ENV = "AKISMET_API_KEYS"

__all__ = ["register_integrations", "spam_signal", "dispute_signal", "setting_list", "plain_text"]

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


def setting_list(extra: Mapping[str, Any], key: str, env: str) -> tuple[str, ...]:
    """A comma-separated secret list from the create_app config (``key``) or the environment (``env``)."""
    raw = extra.get(key)
    if raw is None:
        raw = os.environ.get(env, "")
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    return tuple(s for s in (str(i).strip() for i in items) if s)


def register_integrations(app: Flask) -> None:
    """Install the feedback endpoints and each configured integration, with their OpenAPI paths."""
    from . import akismet, coral
    from .openapi import add_paths

    cfg = app.config["MODCLF"]
    extra = cfg.extra
    store = FeedbackStore(resolve_db_url(extra=extra))
    app.extensions["modclf_feedback"] = store
    app.register_blueprint(feedback_bp)
    installed = ["feedback"]

    coral_secrets = setting_list(extra, "coral_signing_secret", CORAL_SECRET_ENV)
    if coral_secrets:
        app.extensions["modclf_coral_secrets"] = coral_secrets
        app.register_blueprint(coral.bp)
        app.extensions["modclf_verdict_paths"].add(coral.PATH)
        installed.append(f"coral ({len(coral_secrets)} signing secret(s))")
    else:
        log.info("Coral integration not installed: %s is not set", CORAL_SECRET_ENV)

    akismet_keys = setting_list(extra, "akismet_api_keys", AKISMET_KEYS_ENV)
    if akismet_keys:
        app.extensions["modclf_akismet_keys"] = KeyRing(akismet_keys)
        app.register_blueprint(akismet.bp)
        installed.append(f"akismet ({len(akismet_keys)} key(s))")
    else:
        log.info("Akismet-compatible API not installed: %s is not set", AKISMET_KEYS_ENV)

    add_paths(app.extensions["modclf_openapi"], coral=bool(coral_secrets), akismet=bool(akismet_keys),
              bearer=cfg.auth_enabled)
    log.info("integrations: %s; feedback store %s", ", ".join(installed), store.url)
