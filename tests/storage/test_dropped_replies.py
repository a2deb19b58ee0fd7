"""A connection dropped after a Lua call ran but before its reply arrived (the client resends it)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
import redis
from celery import Celery

from celerybeatredis.schedulers import RedisScheduler
from celerybeatredis.storage.redis_store import RedisStore
from celerybeatredis.storage.wire import Plan

from ..support.helpers import EVERY_10S
from ..support.processes import drain_queue

T0 = 1_800_000_000.0


class ReplyDropper:
    """A TCP proxy to Redis that, once armed, lets one command carrying ``marker`` run and drops the connection before its reply."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.marker: bytes | None = None
        self.dropped = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            drop = threading.Event()
            threading.Thread(target=self._requests, args=(client, upstream, drop), daemon=True).start()
            threading.Thread(target=self._replies, args=(upstream, client, drop), daemon=True).start()

    def _requests(self, client: socket.socket, upstream: socket.socket, drop: threading.Event) -> None:
        try:
            while data := client.recv(65536):
                if self.marker is not None and self.marker in data:
                    self.marker = None
                    drop.set()
                upstream.sendall(data)
        except OSError:
            pass

    def _replies(self, upstream: socket.socket, client: socket.socket, drop: threading.Event) -> None:
        try:
            while data := upstream.recv(65536):
                if drop.is_set():
                    self.dropped += 1
                    break  # the command ran; its reply never reaches the client
                client.sendall(data)
        except OSError:
            pass
        for sock in (client, upstream):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def dropper(redis_url: str) -> Iterator[ReplyDropper]:
    proxy = ReplyDropper(int(redis_url.rsplit(":", 1)[1]))
    yield proxy
    proxy.close()




def test_a_lost_commit_reply_still_sends_the_run_once(app: Celery, store: RedisStore, dropper: ReplyDropper,
                                                       redis_url: str) -> None:
    app.conf.redis_scheduler_url = f"redis://127.0.0.1:{dropper.port}/0"
    broker = redis.Redis.from_url(f"{redis_url}/1")
    sched = RedisScheduler(app)
    assert sched.store is not None
    store.put_raw({"add": EVERY_10S})
    sched.tick(now=T0)
    dropper.marker = sched.store.stores[0].scripts.script("commit").sha.encode()
    sched.tick(now=T0 + 10)
    sched.close()
    assert dropper.dropped == 1  # the commit ran, its reply was lost, the client sent it again
    messages = drain_queue(broker, app.conf.task_default_queue)
    assert (len(messages), store.run_state("add")[0]) == (1, 1)
    broker.close()


def test_commit_resent_with_the_same_plans_is_reported_committed_and_writes_nothing_twice(store: RedisStore) -> None:
    store.put_raw({"add": EVERY_10S})
    claim = store.runs.claim(10, 30, T0)
    plans = [Plan("add", claim.lease, T0 + 10, ran=True, run_at="2027-01-15T08:00:00+00:00", digest="d 0")]
    assert store.runs.commit(plans) == [True]
    assert store.runs.commit(plans) == [True]
    assert store.run_state("add")[0] == 1
    other = [Plan("add", claim.lease, T0 + 10, ran=True, run_at="2027-01-15T08:00:01+00:00", digest="d 0")]
    assert store.runs.commit(other) == [False]  # not this claim's run: the lease is gone


def test_a_lost_claim_reply_leaves_the_entries_reserved_until_the_lease_ends(app: Celery, store: RedisStore,
                                                                             dropper: ReplyDropper, redis_url: str) -> None:
    app.conf.redis_scheduler_url = f"redis://127.0.0.1:{dropper.port}/0"
    app.conf.redis_scheduler_lease_seconds = 30
    broker = redis.Redis.from_url(f"{redis_url}/1")
    sched = RedisScheduler(app)
    assert sched.store is not None
    store.put_raw({"add": EVERY_10S})
    sched.tick(now=T0)
    dropper.marker = sched.store.stores[0].scripts.script("claim").sha.encode()
    sched.tick(now=T0 + 10)  # the claim ran, its reply was lost: an error, logged and backed off
    assert dropper.dropped == 1
    assert store.due_score("add") == pytest.approx(T0 + 40)  # reserved by the lost claim
    sched.tick(now=T0 + 39)
    assert drain_queue(broker, app.conf.task_default_queue) == []
    sched.tick(now=T0 + 40)
    sched.close()
    assert len(drain_queue(broker, app.conf.task_default_queue)) == 1  # late, once
    assert store.run_state("add")[0] == 1
    broker.close()
