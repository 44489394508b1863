"""The service state: the loaded model, the moderation policy, and the atomic swap between models.

``app.extensions["modclf"]`` is a :class:`ServiceState`. Every endpoint (the API, Coral,
Akismet) classifies through :meth:`ServiceState.classify`, which asks the current
:class:`~modclf.moderator.Moderator`, so every caller gets the same labels, actions and metrics.

Zero-downtime swap: a request reads ``self._model`` once and works on that object to the end, while
:meth:`ServiceState.reload` builds the new model completely (load, verify, compile the fast path,
self-check) before replacing the reference in one assignment. In-flight requests finish on the old
model; later ones see the new one; nobody sees a half-loaded model, and a model that fails to load
never replaces a working one.

Review queue: when :attr:`ServiceState.recorder` is set (create_app sets it to
:meth:`modclf.queue.ReviewQueue.record`), every verdict whose action is ``review`` is handed to it
with the text, the caller's ``source`` and client id. The recorder runs inside the request, after
the verdict is decided; an exception from it is logged and counted
(``modclf_queue_record_failures_total``) and the verdict is still answered: a queue that is down
must not turn into a classifier that is down (the platform still holds the comment; it is only
missing from this service's queue).
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ..errors import ModelError, PolicyError
from ..moderator import DEFAULT_WINDOW_CHARS, LoadedModel, Moderator
from ..policy import Policy, load_policy
from .metrics import ServiceMetrics

log = logging.getLogger(__name__)


class ServiceState:
    """What the service serves: a :class:`~modclf.moderator.Moderator`, swappable at run time
    without failing requests."""

    def __init__(self, model_dir: str | Path, policy_path: str | Path, *, explain_top: int = 10,
                 metrics: ServiceMetrics | None = None, window_chars: int = DEFAULT_WINDOW_CHARS):
        self._lock = threading.Lock()  # serializes reloads; readers never take it
        self._model_dir = Path(model_dir)
        self._policy_path = Path(policy_path)
        self.window_chars = window_chars
        self._moderator = Moderator(LoadedModel.load(self._model_dir), load_policy(self._policy_path),
                                    window_chars=window_chars)
        self._moderator.warm_up()
        self.explain_top = explain_top
        self.metrics = metrics
        #: pid of the gunicorn master when running under gunicorn (set by the gunicorn config), so an
        #: admin reload in one worker can ask the master to replace every worker.
        self.supervisor_pid: int | None = None
        #: called with the queue entries (verdict fields + text, source, client_id, story_url) of
        #: the held comments of each classify call; see the module docstring
        self.recorder: Callable[[list[dict[str, Any]]], Any] | None = None
        if metrics is not None:
            metrics.model_swapped(None, self._moderator.version)

    # -- read side -------------------------------------------------------------------------------

    @property
    def moderator(self) -> Moderator:
        return self._moderator

    @property
    def model(self) -> LoadedModel:
        return self._moderator.model

    @property
    def model_version(self) -> str:
        return self._moderator.version

    @property
    def policy(self) -> Policy:
        return self._moderator.policy

    @property
    def model_dir(self) -> Path:
        return self._model_dir

    @property
    def policy_path(self) -> Path:
        return self._policy_path

    @property
    def ready(self) -> bool:
        return self._moderator is not None

    def classify(self, texts: Sequence[str], *, explain: bool = False, explain_top: int | None = None,
                 moderator: Moderator | None = None, source: str = "api",
                 ids: Sequence[str | None] | None = None, story_url: str | None = None) -> list[dict[str, Any]]:
        """Classify comments with the current moderator (or ``moderator``, a snapshot taken by a
        caller that also reads its policy); one JSON-ready dict per text, in order (the fields of
        :class:`~modclf.moderator.Verdict`). Counts predictions in the metrics. Held comments go to
        the :attr:`recorder` with ``source`` (the endpoint or integration), the client's ``ids``
        (one per text) and ``story_url``."""
        moderator = moderator or self._moderator  # one consistent snapshot for the whole call
        if not texts:
            return []
        verdicts = moderator.classify(texts, explain=explain, explain_top=explain_top or self.explain_top)
        results = [v.as_dict() for v in verdicts]
        if self.metrics is not None:
            self.metrics.count_predictions([r["label"] for r in results], [r["action"] for r in results])
        if self.recorder is not None:
            self._record(results, texts, source, ids, story_url)
        return results

    def _record(self, results: list[dict[str, Any]], texts: Sequence[str], source: str,
                ids: Sequence[str | None] | None, story_url: str | None) -> None:
        """Hand the held comments to the recorder; never raises (see the module docstring)."""
        from ..queue import review_entries

        entries = review_entries(results, texts, source=source, client_ids=ids, story_url=story_url)
        if not entries:
            return
        try:
            added = self.recorder(entries)  # type: ignore[misc]
        except Exception as exc:  # noqa: BLE001 - by design: the verdict is answered whatever the queue does
            log.error("review queue: %d held comment(s) from %s not queued: %s", len(entries), source, exc)
            if self.metrics is not None:
                self.metrics.queue_record_failures.inc(len(entries))
            return
        if self.metrics is not None and isinstance(added, int) and added:
            self.metrics.queue_recorded.inc(added)

    # -- write side ------------------------------------------------------------------------------

    def reload(self, model_dir: str | Path | None = None) -> str:
        """Swap to the model in ``model_dir`` (default: the current directory); returns its version.

        Raises :class:`ModelError` and keeps serving the old model when the new one is unusable.
        """
        with self._lock, self._counting_failures():
            directory = Path(model_dir) if model_dir is not None else self._model_dir
            new = LoadedModel.load(directory)
            self._swap(new, None, directory)
            return new.version

    def reload_policy(self, path: str | Path | None = None) -> Policy:
        """Swap to the policy file at ``path`` (default: the current one); PolicyError keeps the old."""
        with self._lock, self._counting_failures():
            policy_path = Path(path) if path is not None else self._policy_path
            policy = load_policy(policy_path)
            self._moderator = Moderator(self._moderator.model, policy, window_chars=self.window_chars)
            self._policy_path = policy_path
            return policy

    def reload_all(self) -> tuple[str, Policy]:
        """Reload model and policy from their current paths; neither is swapped unless both load."""
        with self._lock, self._counting_failures():
            new = LoadedModel.load(self._model_dir)
            policy = load_policy(self._policy_path)
            self._swap(new, policy, self._model_dir)
            return new.version, policy

    @contextmanager
    def _counting_failures(self) -> Iterator[None]:
        try:
            yield
        except (ModelError, PolicyError):
            if self.metrics is not None:
                self.metrics.reloads.labels("failed").inc()
            raise

    def _swap(self, new: LoadedModel, policy: Policy | None, directory: Path) -> None:
        old = self._moderator.version
        moderator = Moderator(new, policy or self._moderator.policy, window_chars=self.window_chars)
        moderator.warm_up()
        self._moderator, self._model_dir = moderator, directory  # the atomic swap: one reference assignment
        if self.metrics is not None:
            self.metrics.reloads.labels("ok").inc()
            self.metrics.model_swapped(old, new.version)
        log.info("now serving model %s from %s (was %s)", new.version, directory, old)
