"""Redis clients for the schedule: a single server, Redis Cluster, or Sentinel.

URL forms (see "Redis Cluster, Sentinel and shards" in README.rst):

* ``redis://``, ``rediss://``, ``unix://``: one server (``redis.Redis.from_url``);
  with ``redis_scheduler_cluster = True`` a ``redis://`` / ``rediss://`` URL names
  one node of a Redis Cluster instead.
* ``redis-cluster://[[user]:password@]host:port[,host:port...][/0]`` and
  ``rediss-cluster://`` (TLS): a Redis Cluster, the hosts being startup nodes
  (RedBeat's scheme name).
* ``redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]`` and
  ``rediss+sentinel://`` (TLS to the data nodes): the primary that the listed
  sentinels report for ``service``.
* ``sentinel://[[user]:password@]host:port[/db][;sentinel://host:port...]``: kombu's
  and Celery's sentinel form; the service name is the ``master_name`` option.

Sentinel options read from ``redis_scheduler_redis_options`` (kombu's
transport option names) and not passed on to the client: ``master_name``
(or RedBeat's ``service_name``), ``sentinel_kwargs`` (connection arguments for
the sentinels themselves, e.g. their password) and ``min_other_sentinels``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union
from urllib.parse import unquote, urlsplit

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.connection import parse_url as redis_parse_url
from redis.sentinel import Sentinel

#: A client on the schedule's Redis: a single server (or Sentinel's primary) or a cluster; replies are bytes.
RedisClient = Union[redis.Redis, RedisCluster]
#: A server's ``(host, port)``.
Address = tuple[str, int]

if TYPE_CHECKING:
    from typing_extensions import TypeIs

CLUSTER_SCHEMES = {"redis-cluster": False, "rediss-cluster": True}
SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True, "sentinel": False}
#: Options that configure Sentinel itself rather than the client (kombu's and RedBeat's names).
SENTINEL_OPTIONS = ("master_name", "service_name", "sentinel_kwargs", "min_other_sentinels")
#: ``maxmemory-policy`` values that may evict keys without a TTL, such as the schedule's.
EVICTING_POLICIES = ("allkeys-lru", "allkeys-lfu", "allkeys-random")

DEFAULT_PORT = 6379
DEFAULT_SENTINEL_PORT = 26379


@dataclass(frozen=True)
class Endpoint:
    """Where the schedule lives, as parsed from the URL.

    Attributes:
        kind: ``"single"``, ``"cluster"`` or ``"sentinel"``.
        hosts: ``(host, port)`` of the cluster's startup nodes or of the sentinels.
        service: The sentinel service (primary) name, when given in the URL.
        db: Database number (always 0 on a cluster).
        username: ACL user of the data nodes, if any.
        password: Password of the data nodes, if any.
        tls: Whether the data nodes are reached over TLS.
    """

    kind: str
    hosts: tuple[tuple[str, int], ...] = ()
    service: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False


def parse_url(url: str, cluster: bool = False) -> Endpoint:
    """Parse a schedule URL; raise ``ValueError`` naming what is wrong with it.

    Args:
        url: The ``redis_scheduler_url``.
        cluster: ``redis_scheduler_cluster``: treat a ``redis://`` URL as a cluster node.
    """
    if "://" not in url:
        raise ValueError("redis_scheduler_url: not a URL (no '://'); expected e.g. redis://localhost:6379/0")
    scheme = url.partition("://")[0].lower()
    if scheme in CLUSTER_SCHEMES:
        return _parse_cluster(url, CLUSTER_SCHEMES[scheme])
    if scheme in SENTINEL_SCHEMES:
        return _parse_sentinel(url, scheme)
    if scheme not in ("redis", "rediss", "unix"):
        raise ValueError(
            f"redis_scheduler_url: unknown scheme {scheme!r}; use redis://, rediss://, unix://, "
            "redis-cluster://, redis+sentinel:// or sentinel://"
        )
    if cluster:
        if scheme == "unix":
            raise ValueError("redis_scheduler_url: redis_scheduler_cluster needs a redis:// or rediss:// URL")
        parts = urlsplit(url)
        _check_cluster_db(parts.path)
        return Endpoint(kind="cluster", hosts=((parts.hostname or "localhost", parts.port or DEFAULT_PORT),),
                        username=_unquote(parts.username) or None, password=_unquote(parts.password),
                        tls=scheme == "rediss")
    _check_single(url, scheme)
    return Endpoint(kind="single")


def _check_single(url: str, scheme: str) -> None:
    """What redis-py's ``from_url`` would reject or silently read as database 0, as a ``ValueError`` naming the setting."""
    try:
        redis_parse_url(url)
    except ValueError as exc:
        raise ValueError(f"redis_scheduler_url: {exc}") from None
    if scheme != "unix":
        _db(urlsplit(url).path.strip("/"))


def make_client(url: str, options: Mapping[str, Any] | None = None, cluster: bool = False) -> RedisClient:
    """A client for ``url``: ``redis.Redis``, ``redis.cluster.RedisCluster``, or a Sentinel-managed ``redis.Redis``.

    Args:
        url: The schedule URL (see the module docstring for the forms).
        options: ``redis_scheduler_redis_options``: client keyword arguments, plus the
            Sentinel options listed in ``SENTINEL_OPTIONS``.
        cluster: ``redis_scheduler_cluster``.
    """
    endpoint = parse_url(url, cluster)
    kwargs = dict(options or {})
    sentinel_options = {name: kwargs.pop(name) for name in SENTINEL_OPTIONS if name in kwargs}
    if endpoint.kind == "single":
        return redis.Redis.from_url(url, **kwargs)
    if endpoint.kind == "cluster":
        if url.partition("://")[0].lower() not in CLUSTER_SCHEMES:
            return RedisCluster.from_url(url, **kwargs)
        kwargs.update(_credentials(endpoint))
        if endpoint.tls:
            kwargs.setdefault("ssl", True)
        return RedisCluster(startup_nodes=[ClusterNode(host, port) for host, port in endpoint.hosts], **kwargs)
    service = endpoint.service or sentinel_options.get("master_name") or sentinel_options.get("service_name")
    if not service:
        raise ValueError(
            "redis_scheduler_url: a sentinel URL needs the service name: redis+sentinel://host:26379/<service>, "
            "or master_name in redis_scheduler_redis_options"
        )
    kwargs.update(_credentials(endpoint))
    kwargs["db"] = endpoint.db
    if endpoint.tls:
        kwargs.setdefault("ssl", True)
    sentinel = Sentinel(
        list(endpoint.hosts),
        min_other_sentinels=int(sentinel_options.get("min_other_sentinels") or 0),
        sentinel_kwargs=sentinel_options.get("sentinel_kwargs"),
        **kwargs,
    )
    return sentinel.master_for(service, redis_class=redis.Redis)


def close_client(client: RedisClient) -> None:
    """Close ``client``'s connections, and those to the sentinels behind it, if any."""
    client.close()
    manager = getattr(getattr(client, "connection_pool", None), "sentinel_manager", None)
    if manager is not None and hasattr(manager, "close"):
        manager.close()


def is_cluster(client: RedisClient) -> TypeIs[RedisCluster]:
    """Whether ``client`` is a Redis Cluster client."""
    return isinstance(client, RedisCluster)


def follow_sentinel(client: RedisClient) -> tuple[Address, Address] | None:
    """Ask the sentinels for the current primary; drop connections to a former one.

    redis-py asks the sentinels only when it opens a connection, and a primary
    demoted by ``SENTINEL FAILOVER`` keeps accepting writes (which the failover
    then discards) until the sentinels reconfigure it, which takes seconds.
    Calling this about once a second bounds that window.

    Returns:
        ``(new primary, former primary)`` if the primary changed since the last call, else None.
    """
    pool = getattr(client, "connection_pool", None)
    if pool is None or not hasattr(pool, "get_master_address"):
        return None
    before = pool.master_address
    after = pool.get_master_address()
    if before is not None and before != after:
        # Idle connections were closed by get_master_address; close the rest too.
        pool.disconnect()
        return after, before
    return None


def eviction_warnings(client: RedisClient) -> list[str]:
    """Warnings for nodes whose ``maxmemory-policy`` may evict the schedule's keys.

    The schedule's keys have no TTL, so only ``allkeys-*`` policies can evict
    them. ``CONFIG GET`` is often denied (ACL, managed services); then nothing
    can be said and the list is empty.
    """
    per_node: dict[Any, Any]  # redis-py's annotations assume decoded replies; these are bytes
    try:
        if is_cluster(client):
            replies = client.config_get("maxmemory-policy", target_nodes=RedisCluster.PRIMARIES)
            # One reply per primary, keyed by node name; a one-node cluster gives the reply itself.
            per_node = {"cluster": replies} if "maxmemory-policy" in replies else replies
        else:
            per_node = {"redis": client.config_get("maxmemory-policy")}
    except redis.ResponseError:
        return []
    warnings = []
    for node, config in sorted(per_node.items()):
        policy = _text(config.get("maxmemory-policy") or config.get(b"maxmemory-policy"))
        if policy in EVICTING_POLICIES:
            warnings.append(
                f"maxmemory-policy is {policy} on {node}: Redis may evict the schedule's keys when it is full; "
                "use noeviction or a volatile-* policy for the schedule's Redis"
            )
    return warnings


def _parse_cluster(url: str, tls: bool) -> Endpoint:
    userinfo, hosts, path, query = _split(url)
    if query:
        raise ValueError("redis_scheduler_url: redis-cluster:// URLs take no query options; "
                         "use redis_scheduler_redis_options")
    _check_cluster_db(path)
    username, password = _userinfo(userinfo)
    return Endpoint(kind="cluster", hosts=_hosts(hosts, DEFAULT_PORT), username=username, password=password, tls=tls)


def _parse_sentinel(url: str, scheme: str) -> Endpoint:
    if scheme == "sentinel":
        chunks = [chunk for chunk in url.split(";") if chunk.strip()]
        userinfo, _, path, _ = _split(chunks[0])
        hosts: list[tuple[str, int]] = []
        for chunk in chunks:
            if chunk.partition("://")[0].lower() != "sentinel":
                raise ValueError(f"redis_scheduler_url: every ';'-separated part must be a sentinel:// URL, not {chunk!r}")
            hosts.extend(_hosts(_split(chunk)[1], DEFAULT_SENTINEL_PORT))
        username, password = _userinfo(userinfo)
        return Endpoint(kind="sentinel", hosts=tuple(hosts), db=_db(path.strip("/")), username=username, password=password)
    userinfo, host_text, path, _ = _split(url)
    service, _, db = path.strip("/").partition("/")
    username, password = _userinfo(userinfo)
    return Endpoint(kind="sentinel", hosts=_hosts(host_text, DEFAULT_SENTINEL_PORT), service=unquote(service) or None,
                    db=_db(db), username=username, password=password, tls=SENTINEL_SCHEMES[scheme])


def _split(url: str) -> tuple[str, str, str, str]:
    """``(userinfo, hosts, path, query)`` of a URL whose host part may list several hosts."""
    rest = url.partition("://")[2]
    rest, _, query = rest.partition("?")
    netloc, slash, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    return (userinfo if at else ""), hosts, slash + path, query


def _hosts(text: str, default_port: int) -> tuple[tuple[str, int], ...]:
    hosts = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if item.startswith("["):
            host, _, port_text = item[1:].partition("]")
            port_text = port_text.lstrip(":")
        else:
            host, _, port_text = item.partition(":")
        try:
            port = int(port_text) if port_text else default_port
        except ValueError:
            raise ValueError(f"redis_scheduler_url: bad port in {item!r}") from None
        hosts.append((host or "localhost", port))
    if not hosts:
        raise ValueError("redis_scheduler_url: no host given")
    return tuple(hosts)


def _userinfo(text: str) -> tuple[str | None, str | None]:
    if not text:
        return None, None
    user, colon, password = text.partition(":")
    return _unquote(user) or None, _unquote(password) if colon else None


def _db(text: str) -> int:
    if not text:
        return 0
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"redis_scheduler_url: database must be a number, not {text!r}") from None


def _check_cluster_db(path: str) -> None:
    if _db(path.strip("/")) != 0:
        raise ValueError("redis_scheduler_url: Redis Cluster has only database 0")


def _credentials(endpoint: Endpoint) -> dict[str, str]:
    out = {}
    if endpoint.username:
        out["username"] = endpoint.username
    if endpoint.password is not None:
        out["password"] = endpoint.password
    return out


def _unquote(value: str | None) -> str | None:
    return unquote(value) if value is not None else None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")
