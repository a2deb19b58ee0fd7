"""Scheduler settings read from a Celery app's configuration.

Each setting has a lower-case name and, where the old celerybeat-redis had
one, its upper-case ``CELERY_REDIS_SCHEDULER_*`` name; the lower-case name
wins when both are set. A name the scheduler does not read but that looks
meant for it (a typo, an unknown ``redis_scheduler_*``) would leave its value
silently unused, so :func:`unknown_settings` names it and the setting meant.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from difflib import get_close_matches
from fnmatch import fnmatchcase
from typing import Any

from celery import Celery

from .storage.connection import RedisClient, make_client, parse_url
from .storage.keys import DEFAULT_PREFIX, DEFAULT_URL, key_tag

#: Broker URLs that name a Redis the schedule may share when no URL is set.
BROKER_SCHEMES = ("redis://", "rediss://", "sentinel://")
SENTINEL_TRANSPORT_OPTIONS = ("master_name", "sentinel_kwargs", "min_other_sentinels")

#: The values ``redis_scheduler_delivery`` takes (:mod:`~celerybeatredis.delivery.modes` says what each does).
AT_MOST_ONCE = "at-most-once"
AT_LEAST_ONCE = "at-least-once"
EXACTLY_ONCE = "exactly-once"
AUTO = "auto"
DELIVERY_MODES = (AUTO, AT_MOST_ONCE, AT_LEAST_ONCE, EXACTLY_ONCE)


@dataclass(frozen=True)
class Settings:
    """Everything the scheduler reads from configuration.

    Attributes:
        url: Redis URL of the schedule (``redis://``, ``rediss://``, ``unix://``,
            ``redis-cluster://``, ``redis+sentinel://``, ``sentinel://``; see :mod:`~celerybeatredis.storage.connection`).
        key_prefix: Prefix whose trailing ``:`` is dropped to make the hash tag.
        batch_size: Most entries one Lua call claims or commits.
        lease_seconds: How long a claimed entry stays reserved for the beat
            that claimed it; after that another beat may claim it again.
        reconcile_batch: Fields one reconciler step reads from each index.
        reconcile_interval: Seconds between two reconciler steps.
        publish_retry_seconds: Delay before a run whose publish failed is tried again.
        redis_options: Extra keyword arguments for the Redis client (and, with
            Sentinel, kombu's ``master_name`` / ``sentinel_kwargs`` / ``min_other_sentinels``).
        cluster: Treat a ``redis://`` URL as a node of a Redis Cluster.
        shards: Number of hash tags the schedule is spread over (see :mod:`~celerybeatredis.moving.reshard`).
        task_allowlist: Task names (or ``fnmatch`` patterns such as ``tasks.*``) beat may
            send; empty means any. An entry whose task is outside it is quarantined.
        wait_replicas: Replicas that must acknowledge a commit (``WAIT``) before its
            runs are published; 0 = do not wait.
        wait_timeout: Seconds to wait for them; a commit not acknowledged in time is
            undone and tried again, never published.
        claim_ahead: Whether a tick claims the next full batch before it publishes the
            current one (True), never (False), or only while publishing a batch costs
            less than deciding it does, measured (None, "auto").
        http: ``host:port`` beat serves ``/healthz`` and ``/metrics`` on (needs the
            ``metrics`` extra); None = no HTTP endpoint.
        history: Runs kept in each entry's history (``{T}:history``), written by the commit; 0 = off.
        web_token: The token the dashboard (``celerybeatredis web``) asks every request for; None = none.
        web_users: The dashboard's basic-auth users, ``{name: password}`` (or ``"name:password,..."``).
        delivery: ``at-most-once`` (publish after the commit), ``exactly-once`` (the commit writes the
            task messages; the broker must be the schedule's Redis database) or ``auto`` (exactly-once
            where the broker allows it, else at-most-once); see :mod:`~celerybeatredis.delivery.modes`.
    """

    url: str = DEFAULT_URL
    key_prefix: str = DEFAULT_PREFIX
    batch_size: int = 1000
    lease_seconds: float = 3.0
    reconcile_batch: int = 2000
    reconcile_interval: float = 1.0
    publish_retry_seconds: float = 5.0
    redis_options: Mapping[str, Any] | None = None
    task_allowlist: tuple[str, ...] = ()
    cluster: bool = False
    shards: int = 1
    wait_replicas: int = 0
    wait_timeout: float = 1.0
    claim_ahead: bool | None = None
    http: str | None = None
    history: int = 10
    web_token: str | None = field(default=None, repr=False)  # secrets: never in a repr, a log or a banner
    web_users: Mapping[str, str] | None = field(default=None, repr=False)
    delivery: str = "auto"

    @property
    def tag(self) -> str:
        """The hash tag of the schedule's keys, e.g. ``tasks:meta``."""
        return key_tag(self.key_prefix)

    @property
    def safe_url(self) -> str:
        """The URL with any password masked, for logs and the banner."""
        return mask_url(self.url)

    @classmethod
    def from_app(cls, app: Celery) -> Settings:
        """Read the settings of ``app``; see README.rst for the table."""
        conf = app.conf

        def get(name: str, old: str | None = None) -> Any:
            value = conf.get(name)
            if value is None and old is not None:
                value = conf.get(old)
            return value

        url = get("redis_scheduler_url", "CELERY_REDIS_SCHEDULER_URL")
        redis_options = get("redis_scheduler_redis_options")
        if not url:
            broker = conf.get("broker_url") or ""
            url = broker if isinstance(broker, str) and broker.startswith(BROKER_SCHEMES) else DEFAULT_URL
            if url.startswith("sentinel://") and redis_options is None:
                # Same Redis as a kombu sentinel broker: take its sentinel options too.
                transport = conf.get("broker_transport_options") or {}
                redis_options = {k: transport[k] for k in SENTINEL_TRANSPORT_OPTIONS if k in transport}
        prefix = get("redis_scheduler_key_prefix", "CELERY_REDIS_SCHEDULER_KEY_PREFIX")
        defaults = cls()

        def number(name: str, kind: type[int] | type[float]) -> Any:
            return _number(get(f"redis_scheduler_{name}"), f"redis_scheduler_{name}", kind, getattr(defaults, name))

        settings = cls(
            url=str(url),
            key_prefix=str(prefix) if prefix else DEFAULT_PREFIX,
            batch_size=number("batch_size", int),
            lease_seconds=number("lease_seconds", float),
            reconcile_batch=number("reconcile_batch", int),
            reconcile_interval=number("reconcile_interval", float),
            publish_retry_seconds=number("publish_retry_seconds", float),
            redis_options=redis_options,
            task_allowlist=_names(get("redis_scheduler_task_allowlist"), "redis_scheduler_task_allowlist"),
            cluster=_flag(get("redis_scheduler_cluster")),
            shards=number("shards", int),
            wait_replicas=number("wait_replicas", int),
            wait_timeout=number("wait_timeout", float),
            claim_ahead=_auto_flag(get("redis_scheduler_claim_ahead"), "redis_scheduler_claim_ahead"),
            http=str(get("redis_scheduler_http")) if get("redis_scheduler_http") not in (None, "") else None,
            history=number("history", int),
            web_token=str(get("redis_scheduler_web_token")) if get("redis_scheduler_web_token") else None,
            web_users=web_users(get("redis_scheduler_web_users"), "redis_scheduler_web_users"),
            delivery=_choice(get("redis_scheduler_delivery"), "redis_scheduler_delivery", DELIVERY_MODES, defaults.delivery),
        )
        settings.validate()
        return settings

    def task_allowed(self, task: str) -> bool:
        """Whether beat may send ``task`` (always, without an allow-list)."""
        return not self.task_allowlist or any(fnmatchcase(task, pattern) for pattern in self.task_allowlist)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the setting that is out of range."""
        if not key_tag(self.key_prefix):
            raise ValueError("redis_scheduler_key_prefix must not be empty")
        if any(c in self.key_prefix for c in "{}"):
            raise ValueError("redis_scheduler_key_prefix must not contain '{' or '}' (it becomes a hash tag)")
        for name in ("batch_size", "reconcile_batch", "shards"):
            if getattr(self, name) < 1:
                raise ValueError(f"redis_scheduler_{name} must be at least 1")
        for name in ("wait_replicas", "history"):
            if getattr(self, name) < 0:
                raise ValueError(f"redis_scheduler_{name} must not be negative")
        for name in ("lease_seconds", "reconcile_interval", "publish_retry_seconds", "wait_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"redis_scheduler_{name} must be greater than 0")
        parse_url(self.url, self.cluster)
        if self.http is not None:
            http_address(self.http)

    def client(self) -> RedisClient:
        """A new client on the schedule's Redis, with keepalive and health checks on by default."""
        options = dict(self.redis_options or {})
        options.setdefault("health_check_interval", 30)
        options.setdefault("socket_keepalive", True)
        return make_client(self.url, options, self.cluster)

    @property
    def http_address(self) -> tuple[str, int] | None:
        """``(host, port)`` of the HTTP endpoint, or None when it is off."""
        return None if self.http is None else http_address(self.http)


PREFIX = "redis_scheduler_"
#: Every setting's name, one per field of :class:`Settings`, and each without :data:`PREFIX`.
NAMES = tuple(PREFIX + f.name for f in fields(Settings))
SUFFIXES = tuple(f.name for f in fields(Settings))
#: The upper-case names the old celerybeat-redis read, and the setting each is.
OLD_NAMES = {"CELERY_REDIS_SCHEDULER_URL": "redis_scheduler_url",
             "CELERY_REDIS_SCHEDULER_KEY_PREFIX": "redis_scheduler_key_prefix"}
#: How alike (difflib's ratio) a name must be to a setting's to be taken for a typo of it; a name under
#: :data:`PREFIX` is surely meant for the scheduler, and its rest is compared more loosely.
CLOSE = 0.8
CLOSE_SUFFIX = 0.7


def unknown_settings(keys: Iterable[Any], namespace: str | None = None) -> list[str]:
    """One line per name in ``keys`` (a configuration's) that the scheduler does not read though it looks meant
    for it: ``unknown setting 'redis_schedular_url' (did you mean 'redis_scheduler_url'?)``.

    ``namespace`` is the prefix Celery reads settings under (``app.conf.prefix``, such as ``CELERY_`` after
    ``config_from_object(..., namespace="CELERY")``): names under it are read as the bare names.
    """
    valid = {*NAMES, *OLD_NAMES, *(_namespaced(name, namespace) for name in NAMES if namespace)}
    lines = []
    for key in keys:
        if not isinstance(key, str) or key in valid:
            continue
        bare = key.lower()
        for start in (namespace.lower() if namespace else "", "celery_"):
            bare = bare[len(start):] if start and bare.startswith(start) else bare
        own = bare.startswith(PREFIX)
        # Under the prefix, the rest of the name is compared: every name shares the prefix, so would look alike.
        close = _close_suffix(bare[len(PREFIX):]) if own else get_close_matches(bare, NAMES, 1, CLOSE)
        if close:
            meant = PREFIX + close[0] if own else close[0]
            lines.append(f"unknown setting {key!r} (did you mean {_spelled(meant, key, namespace)!r}?)")
        elif own:
            lines.append(f"unknown setting {key!r} (celerybeat-redis reads no such setting)")
    return lines


def _close_suffix(rest: str) -> list[str]:
    """The setting (without :data:`PREFIX`) ``rest`` is most like, or one it is the start of (``lease``); [] for none."""
    close = get_close_matches(rest, SUFFIXES, 1, CLOSE_SUFFIX)
    started = [suffix for suffix in SUFFIXES if suffix.startswith(rest)]
    return close or (started if len(started) == 1 else [])


def unknown_in(app: Celery) -> list[str]:
    """:func:`unknown_settings` of ``app``'s configuration, under its namespace."""
    conf = app.conf
    return unknown_settings(list(conf.keys()), getattr(conf, "prefix", None))


def _namespaced(name: str, namespace: str) -> str:
    """``name`` under ``namespace`` as Celery looks it up: in the namespace's case."""
    return namespace + (name.upper() if namespace.isupper() else name)


def _spelled(name: str, key: str, namespace: str | None) -> str:
    """The setting ``name`` written as the mistyped ``key`` was meant: upper-case under an upper-case namespace or
    as an old name, else lower-case."""
    if key.isupper() and namespace and namespace.isupper():
        return _namespaced(name, namespace)
    old = next((old for old, new in OLD_NAMES.items() if new == name), None)
    return old if key.isupper() and old else name


def http_address(value: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:9808`` for IPv6) as ``(host, port)``; else ``ValueError`` naming redis_scheduler_http."""
    host, colon, port = value.strip().rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"redis_scheduler_http must be host:port to listen on, such as 127.0.0.1:9808, not {value!r}")
    return host, int(port)


def _number(value: Any, setting: str, kind: type[int] | type[float], default: float) -> Any:
    """``default`` when unset; else ``value`` as ``kind`` (0 is a value, checked by ``validate``, not "unset")."""
    if value is None:
        return default
    whole = kind is int
    try:
        if isinstance(value, bool) or (whole and isinstance(value, float) and not value.is_integer()):
            raise ValueError
        return kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"{setting} must be a {'whole ' if whole else ''}number, not {value!r}") from None


def web_users(value: Any, setting: str) -> dict[str, str] | None:
    """``{name: password}`` or ``"alice:secret,bob:other"`` -> a dict; a ValueError names the item, never a password."""
    if value in (None, "", {}):
        return None
    if isinstance(value, Mapping):
        items = [(str(k), str(v)) for k, v in value.items()]
    elif isinstance(value, str):
        items = [(part.partition(":")[0], part.partition(":")[2]) for part in (p.strip() for p in value.split(",")) if part]
    else:
        raise ValueError(f"{setting} must be a dict or 'NAME:PASSWORD,...', not {type(value).__name__}")
    for name, password in items:
        if not name or not password:
            raise ValueError(f"{setting}: {name or '(empty)'!r} is not NAME:PASSWORD")
    return dict(items)
def _choice(value: Any, setting: str, choices: tuple[str, ...], default: str) -> str:
    """One of ``choices`` (case and spaces aside), ``default`` when unset; else an error naming ``setting``."""
    if value is None:
        return default
    if isinstance(value, str) and value.strip().lower() in choices:
        return value.strip().lower()
    raise ValueError(f"{setting} must be one of {', '.join(choices)}, not {value!r}")


def _names(value: Any, setting: str) -> tuple[str, ...]:
    """A list of names, or one string of comma-separated names."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, (list, tuple, set, frozenset)) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{setting} must be a list of task names or patterns")
    return tuple(v.strip() for v in value if v.strip())


def mask_url(url: str) -> str:
    """Replace the password in ``url`` with ``****`` (each part of a ``;``-joined sentinel URL too)."""
    return ";".join(_QUERY_PASSWORD.sub(r"\1****", _PASSWORD.sub(r"\1****@", part)) for part in url.split(";"))


_PASSWORD = re.compile(r"^([a-z0-9+.-]+://[^:@/]*:)[^@/]*@", re.IGNORECASE)
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&]*", re.IGNORECASE)


_YES = ("1", "true", "yes", "on")
_NO = ("0", "false", "no", "off")


def _auto_flag(value: Any, setting: str) -> bool | None:
    """None for unset or ``"auto"``, else a yes/no flag; anything else is an error naming ``setting``."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in (*_YES, *_NO):
        return _flag(value)
    raise ValueError(f"{setting} must be true, false or 'auto', not {value!r}")


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in _YES
    return bool(value)
