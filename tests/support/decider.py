"""Claimed entries built by hand, decided as beat decides them: no Redis, no broker."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from celery import Celery

from celerybeatredis.decisions.anchors import digest_and_anchor
from celerybeatredis.decisions.batch import Batch
from celerybeatredis.decisions.decide import Decision, decide
from celerybeatredis.decisions.planner import Planner, TickClock
from celerybeatredis.definitions.codec import SHORT_DIGEST, Codec, digest
from celerybeatredis.settings import Settings
from celerybeatredis.storage.wire import Claimed

from .helpers import T0

#: tasks.add every 10 seconds, without args.
EVERY_10S: dict[str, Any] = {"task": "tasks.add", "interval": {"every": 10, "period": "seconds"}}


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat()


def raw(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


def short(doc: dict[str, Any]) -> str:
    """The short digest of ``doc``, as ``{T}:digest`` keeps it."""
    return digest(raw(doc))[:SHORT_DIGEST]


def claimed(doc: dict[str, Any] | bytes = EVERY_10S, *, score: float = T0, count: int | None = None, last: float | str | None = None,
            stored_digest: str | None = None, bad_count: str | None = None) -> Claimed:
    """A claimed entry named ``e`` as claim.lua would hand it over."""
    last_run_at = iso(last) if isinstance(last, float) else last
    definition = doc if isinstance(doc, bytes) else raw(doc)
    return Claimed("e", score, definition, count, last_run_at, stored_digest, bad_count)


class Decider:
    """A planner over a codec whose schedules read the batch's time, as beat's do."""

    def __init__(self, **conf: Any) -> None:
        app = Celery("decisions", set_as_current=False)
        app.conf.update(conf)
        self.clock = TickClock()
        self.codec = Codec(app, nowfun=self.clock.now)
        self.planner = Planner(self.codec, self.clock, Settings.from_app(app))

    def batch(self, at: float) -> Batch:
        batch = Batch("lease-1", at)
        self.clock.current = batch.now
        return batch

    def pure(self, entry: Claimed, at: float) -> Decision:
        """:func:`decide` itself, with the definition parsed and the last run read as the planner does."""
        batch = self.batch(at)
        last_run = batch.last_run(entry.last_run_at) if entry.last_run_at else None
        sha = digest(entry.definition)
        digested = digest_and_anchor(entry.digest, sha, last_run is not None, at)
        return decide(entry, self.codec.parse(entry.definition, sha), last_run, digested, batch)

    def planned(self, entry: Claimed, at: float, errors: dict[str, BaseException] | None = None) -> Decision:
        """The planner's decision: parsing and admission included; an unforeseen error put in ``errors``."""
        return self.planner.decide(entry, self.batch(at), errors)
