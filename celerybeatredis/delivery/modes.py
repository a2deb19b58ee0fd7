"""Which delivery mode beat runs in (``redis_scheduler_delivery``), and whether the broker allows it.

``at-least-once`` records each run as pending (its task id) in the commit and
forgets it once the broker took the message; a pending run whose beat died is
sent again, with the same task id, after the lease. ``exactly-once`` writes
each run's task message in the Lua call that commits
the run, so it needs the broker to be the very Redis database that holds the
schedule, on a server that is not a Redis Cluster (a script may only touch
keys of one slot there). ``auto`` takes ``exactly-once`` where that holds and
``at-most-once`` elsewhere.
"""

from __future__ import annotations

from typing import Any

import redis
from kombu import Producer

from ..settings import AT_LEAST_ONCE, AT_MOST_ONCE, EXACTLY_ONCE
from ..storage.connection import RedisClient, is_cluster


class DeliveryUnavailable(Exception):
    """``exactly-once`` was asked for on a layout that cannot give it; the message says why in one line."""


def exactly_once_problem(schedule: RedisClient, producer: Producer) -> str | None:
    """Why the broker behind ``producer`` cannot take messages in the schedule's commits; None when it can."""
    if is_cluster(schedule):
        return "the schedule is on a Redis Cluster (a commit cannot write the broker's queues from one slot)"
    channel = producer.channel
    broker: Any = getattr(channel, "client", None)
    if not hasattr(channel, "_q_for_pri") or not isinstance(broker, redis.Redis):
        return f"the broker is not a Redis server ({producer.connection.transport_cls})"
    if _address(broker) != _address(schedule):
        return ("the broker is another Redis database than the schedule's (its URL must name the schedule's host, "
                "port and database; leave redis_scheduler_url unset to share it)")
    return None


def _address(client: Any) -> tuple[str, int, str, str, int]:
    """Host, port, socket path (or Sentinel service) and database the client connects to: two clients with the same
    are on one database of one server (asked without INFO, which an ACL user may not run)."""
    pool = client.connection_pool
    kwargs = pool.connection_kwargs
    return (str(kwargs.get("host", "")), int(kwargs.get("port", 0) or 0), str(kwargs.get("path", "")),
            str(getattr(pool, "service_name", "")), int(kwargs.get("db", 0) or 0))


def resolve(setting: str, schedule: RedisClient, producer: Producer) -> tuple[str, str | None]:
    """The mode beat runs in for ``setting``, and why ``exactly-once`` was not taken (None if it was or was not asked).

    Raises:
        DeliveryUnavailable: ``exactly-once`` was asked for and the layout cannot give it.
    """
    if setting in (AT_MOST_ONCE, AT_LEAST_ONCE):
        return setting, None
    problem = exactly_once_problem(schedule, producer)
    if problem is None:
        return EXACTLY_ONCE, None
    if setting == EXACTLY_ONCE:
        raise DeliveryUnavailable(f"redis_scheduler_delivery is exactly-once, but {problem}")
    return AT_MOST_ONCE, problem
