"""The review queue on a real PostgreSQL server (the throwaway cluster of test_feedback_postgres)."""

from __future__ import annotations

import multiprocessing

import pytest

from modclf.feedback import FeedbackStore
from modclf.labels import LABELS
from modclf.queue import DecisionConflict, ReviewQueue

from .test_feedback_postgres import pg_url  # noqa: F401 - the module-scoped cluster fixture

pytestmark = pytest.mark.slow

VERDICT = {"label": "dispute", "confidence": 0.6, "probabilities": {**dict.fromkeys(LABELS, 0.1), "dispute": 0.6},
           "action": "review", "truncated": False, "model_version": "m", "policy_version": "p"}


def _decide(url: str, item_id: int, action: str, label: str, out) -> None:
    try:
        status, _ = ReviewQueue(FeedbackStore(url)).decide(item_id, action, label)
        out.put(status)
    except DecisionConflict:
        out.put("conflict")


def test_queue_on_postgresql(pg_url: str) -> None:  # noqa: F811
    a, b = ReviewQueue(FeedbackStore(pg_url)), ReviewQueue(FeedbackStore(pg_url))
    entries = [{**VERDICT, "text": f"pg queue comment {i}", "source": "api", "client_id": f"c{i}",
                "probabilities": {**VERDICT["probabilities"], "other": 0.1 + i / 100}} for i in range(5)]
    assert a.record(entries) == 5
    assert a.record(entries[:2]) == 0  # already pending
    page = b.pending(limit=2)
    assert page.pending == 5 and [i.client_id for i in page.items] == ["c0", "c1"]
    rest = b.pending(limit=10, cursor=page.next_cursor)
    assert [i.client_id for i in rest.items] == ["c2", "c3", "c4"]
    uncertain = b.pending(order="uncertain")
    assert [i.client_id for i in uncertain.items] == ["c4", "c3", "c2", "c1", "c0"]
    status, item = b.decide(page.items[0].id, "approve")
    assert status == "decided" and a.pending().pending == 4
    assert b.decide(item.id, "approve")[0] == "unchanged"
    with pytest.raises(DecisionConflict):
        a.decide(item.id, "reject", "spam")
    assert a.decide(item.id, "reject", "spam", override=True)[0] == "updated"
    labels = {d.id: d.label for d in FeedbackStore(pg_url).decisions()}
    assert labels[f"queue:{item.id}"] == "spam"


def test_concurrent_different_decisions_on_postgresql_one_wins(pg_url: str) -> None:  # noqa: F811
    queue = ReviewQueue(FeedbackStore(pg_url))
    queue.record([{**VERDICT, "text": "contended comment", "source": "api"}])
    item = next(i for i in queue.pending(limit=200).items if i.text == "contended comment")
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_decide, args=(pg_url, item.id, action, label, out))
             for action, label in (("approve", "dispute"), ("reject", "spam"))]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert sorted(out.get(timeout=10) for _ in procs) == ["conflict", "decided"]
    decided = queue.get(item.id)
    labels = {d.id: d.label for d in FeedbackStore(pg_url).decisions()}
    assert labels[f"queue:{item.id}"] == decided.decision_label  # the store agrees with the winner
