"""Schedule URLs (single server, cluster, sentinel), settings, and the eviction warning at beat start."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from celery import Celery

from celerybeatredis.schedulers import RedisScheduler
from celerybeatredis.settings import Settings, mask_url
from celerybeatredis.storage.connection import Endpoint, eviction_warnings, parse_url

from ..support.redis_server import RedisServer


@pytest.mark.parametrize(("url", "cluster", "expected"), [
    ("redis://h:1/2", False, Endpoint("single")),
    ("unix:///run/redis.sock?db=1", False, Endpoint("single")),
    ("redis-cluster://h1:7000,h2:7001", False, Endpoint("cluster", (("h1", 7000), ("h2", 7001)))),
    ("rediss-cluster://u:p%40ss@[::1]:7000/0", False,
     Endpoint("cluster", (("::1", 7000),), username="u", password="p@ss", tls=True)),
    ("redis://:pw@node:7000", True, Endpoint("cluster", (("node", 7000),), password="pw")),
    ("redis+sentinel://:pw@s1,s2:26380/mymaster/3", False,
     Endpoint("sentinel", (("s1", 26379), ("s2", 26380)), "mymaster", 3, None, "pw")),
    ("rediss+sentinel://s1/mymaster", False, Endpoint("sentinel", (("s1", 26379),), "mymaster", tls=True)),
    ("sentinel://:pw@s1:26379/2;sentinel://s2:26379", False,
     Endpoint("sentinel", (("s1", 26379), ("s2", 26379)), None, 2, None, "pw")),
])
def test_url_forms(url: str, cluster: bool, expected: Endpoint) -> None:
    assert parse_url(url, cluster) == expected


@pytest.mark.parametrize(("url", "cluster", "message"), [
    ("redis-cluster://h:1/3", False, "only database 0"),
    ("redis://h:1/3", True, "only database 0"),
    ("redis-cluster://h:1?socket_timeout=1", False, "no query options"),
    ("unix:///x.sock", True, "needs a redis:// or rediss:// URL"),
    ("memcached://h", False, "unknown scheme 'memcached'"),
    ("redis+sentinel://h:x/m", False, "bad port"),
    ("sentinel://h:1;redis://h:2", False, "must be a sentinel:// URL"),
    ("redis+sentinel://h/m/zero", False, "database must be a number"),
])
def test_bad_urls_are_named_in_the_error(url: str, cluster: bool, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_url(url, cluster)


def test_settings_for_cluster_shards_and_sentinel_brokers() -> None:
    app = Celery("s", set_as_current=False)
    app.conf.update(redis_scheduler_url="redis://n:1", redis_scheduler_cluster="true", redis_scheduler_shards=4)
    settings = Settings.from_app(app)
    assert (settings.cluster, settings.shards) == (True, 4)
    app.conf.redis_scheduler_shards = -1
    with pytest.raises(ValueError, match="redis_scheduler_shards"):
        Settings.from_app(app)
    app.conf.update(redis_scheduler_shards=None, redis_scheduler_url="redis-cluster://n:1/5")
    with pytest.raises(ValueError, match="only database 0"):
        Settings.from_app(app)

    broker = Celery("b", set_as_current=False, broker="sentinel://:pw@s1:26379/1;sentinel://s2:26379")
    broker.conf.broker_transport_options = {"master_name": "m", "visibility_timeout": 10}
    settings = Settings.from_app(broker)
    assert settings.url.startswith("sentinel://") and settings.redis_options == {"master_name": "m"}
    assert settings.safe_url == "sentinel://:****@s1:26379/1;sentinel://s2:26379"


def test_passwords_are_masked_in_every_url_form() -> None:
    assert mask_url("redis-cluster://u:secret@h1:1,h2:2") == "redis-cluster://u:****@h1:1,h2:2"
    assert mask_url("redis+sentinel://:secret@s1,s2/m/0") == "redis+sentinel://:****@s1,s2/m/0"
    assert mask_url("unix:///x.sock?db=1&password=secret") == "unix:///x.sock?db=1&password=****"
    assert mask_url("redis://h:1/0") == "redis://h:1/0"


@pytest.fixture(scope="module")
def evicting_server() -> Iterator[RedisServer]:
    server = RedisServer("--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru").start()
    yield server
    server.cleanup()


def test_beat_warns_when_the_schedule_could_be_evicted(evicting_server: RedisServer,
                                                       caplog: pytest.LogCaptureFixture, prefix: str) -> None:
    app = Celery("e", set_as_current=False)
    app.conf.update(redis_scheduler_url=evicting_server.url, redis_scheduler_key_prefix=prefix, result_expires=None)
    RedisScheduler(app).close()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("maxmemory-policy is allkeys-lru" in w for w in warnings), warnings


@pytest.mark.parametrize("policy", ["noeviction", "volatile-lru", "volatile-ttl"])
def test_policies_that_spare_keys_without_ttl_are_not_reported(evicting_server: RedisServer, policy: str) -> None:
    with redis.Redis(port=evicting_server.port) as conn:
        conn.config_set("maxmemory-policy", policy)
        try:
            assert eviction_warnings(conn) == []
        finally:
            conn.config_set("maxmemory-policy", "allkeys-lru")
