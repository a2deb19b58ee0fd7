"""A committed batch published late skips the runs whose entries ran again since, and says so."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import redis
from celery import Celery

from celerybeatredis.beat import freshness
from celerybeatredis.schedulers import RedisScheduler
from celerybeatredis.storage.redis_store import RedisStore
from celerybeatredis.storage.runs import Committed, Runs

from ..support.helpers import EVERY_10S, put, sent


@pytest.mark.parametrize("late", [True, False], ids=["published-late", "published-on-time"])
def test_a_late_batch_skips_runs_whose_entry_ran_again_since(
        app: Celery, store: RedisStore, broker: redis.Redis, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture, late: bool) -> None:
    for name in ("a", "b", "c"):
        put(store, name, EVERY_10S, -1)  # run now
    # Late: every publish counts as late; on time: none does, however loaded the machine.
    monkeypatch.setattr(freshness, "STALE_AFTER", 0.0 if late else 3600.0)
    scheduler = RedisScheduler(app)
    commit = Runs.commit

    def another_beat_ran_b_meanwhile(self: Runs, *args: Any, **kwargs: Any) -> Committed:
        done = commit(self, *args, **kwargs)
        self.scripts.client.hset(self.scripts.keys.last_run_at, "b", "2099-01-01T00:00:00+00:00")
        return done

    monkeypatch.setattr(Runs, "commit", another_beat_ran_b_meanwhile)
    try:
        with caplog.at_level(logging.WARNING, logger="celerybeatredis.schedulers"):
            scheduler.tick()
    finally:
        scheduler.close()
    names = sorted(m.headers["periodic_task_name"] for m in sent(broker, app))
    warned = [r.getMessage() for r in caplog.records if "runs not sent" in r.getMessage()]
    if late:
        assert names == ["a", "c"]
        assert len(warned) == 1 and warned[0].startswith("beat: 1 runs not sent") and "'b'" in warned[0]
    else:  # on time: nothing is looked up, everything is sent
        assert names == ["a", "b", "c"] and warned == []
