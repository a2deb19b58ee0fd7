"""The ``{T}:digest`` value (``decisions/anchors.py``): a short digest, with a new entry's anchor until it has a last
run; older full SHA-1 digests honoured."""

from __future__ import annotations

import pytest
import redis
from celery import Celery

from celerybeatredis.decisions.anchors import digest_and_anchor
from celerybeatredis.definitions.codec import SHORT_DIGEST, digest
from celerybeatredis.schedulers import RedisScheduler
from celerybeatredis.storage.redis_store import RedisStore

from ..support.decider import EVERY_10S as DEFINITION
from ..support.decider import raw
from ..support.helpers import EVERY_10S_DOC as EVERY_10S
from ..support.helpers import T0, put, sent


def test_the_digest_keeps_the_anchor_until_a_last_run_then_only_the_short_digest() -> None:
    sha = digest(raw(DEFINITION))
    assert digest_and_anchor(None, sha, False, T0) == (f"{sha[:SHORT_DIGEST]} {T0:.6f}", T0)
    kept = f"{sha[:SHORT_DIGEST]} {T0 - 7:.6f}"
    assert digest_and_anchor(kept, sha, False, T0) == ("", T0 - 7)  # unchanged: commit.lua leaves it
    assert digest_and_anchor(f"{sha} {T0 - 7:.6f}", sha, False, T0) == (kept, T0 - 7)  # a full SHA-1 of older data, shortened
    assert digest_and_anchor(kept, sha, True, T0)[0] == sha[:SHORT_DIGEST]
    assert digest_and_anchor(sha[:SHORT_DIGEST], sha, True, T0)[0] == ""
    edited = f"{'0' * SHORT_DIGEST} {T0 - 7:.6f}"  # another version of the definition: anchored afresh
    assert digest_and_anchor(edited, sha, False, T0) == (f"{sha[:SHORT_DIGEST]} {T0:.6f}", T0)
    assert digest_and_anchor(f"{sha[:SHORT_DIGEST]} inf", sha, False, T0) == (f"{sha[:SHORT_DIGEST]} {T0:.6f}", T0)


def test_digest_is_short_and_keeps_the_anchor_only_until_there_is_a_last_run(
        scheduler: RedisScheduler, store: RedisStore, broker: redis.Redis, app: Celery) -> None:
    from celerybeatredis.definitions.codec import digest

    put(store, "add", EVERY_10S)
    sha = digest(store.get_raw("add") or b"")
    scheduler.tick(now=T0)
    assert store.client.hget(store.keys.digest, "add") == f"{sha[:12]} {T0:.6f}".encode()
    scheduler.tick(now=T0 + 10)  # the first run: a failed publish would need the anchor again
    assert len(sent(broker, app)) == 1
    assert store.client.hget(store.keys.digest, "add") == f"{sha[:12]} {T0:.6f}".encode()
    scheduler.tick(now=T0 + 20)  # runs are timed from last_run_at from now on
    assert len(sent(broker, app)) == 1
    assert store.client.hget(store.keys.digest, "add") == sha[:12].encode()
    scheduler.tick(now=T0 + 30)
    assert len(sent(broker, app)) == 1 and store.due_score("add") == pytest.approx(T0 + 40)


def test_a_full_sha1_digest_of_older_data_is_honoured_and_shortened(
        scheduler: RedisScheduler, store: RedisStore, broker: redis.Redis, app: Celery) -> None:
    from celerybeatredis.definitions.codec import digest

    put(store, "add", EVERY_10S, score=T0 + 3)
    sha = digest(store.get_raw("add") or b"")
    store.client.hset(store.keys.digest, "add", f"{sha} {T0 - 7:.6f}")  # first seen 7 s before T0, never ran
    scheduler.tick(now=T0 + 3)  # due at the anchor + 10 s: the stored anchor is kept, not reset to now
    assert len(sent(broker, app)) == 1
    assert store.client.hget(store.keys.digest, "add") == f"{sha[:12]} {T0 - 7:.6f}".encode()
