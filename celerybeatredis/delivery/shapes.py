"""Task messages of many runs at the cost of one: Celery builds the first of each kind, the others are filled in.

Two runs whose task and options are the same get messages that differ only in
the task id (``id``, ``root_id``, ``correlation_id``), kombu's delivery tag,
the body (args, kwargs) with its ``argsrepr`` / ``kwargsrepr``, and the
headers of the run (``periodic_task_name`` and the others of
:func:`~.sending.run_headers`). So the first run of each (task, options) is
built by Celery and kombu (captured) and kept as a shape;
later runs copy the shape and set those fields, the body serialized as Celery
would (once per definition: the codec keeps one parsed definition per digest)
after Celery's check of the task's arguments, which a copy would skip.
Runs whose message depends on more (an option read at the time of sending, a
publish signal with receivers, which must see every run, a monitor or tracer
watching each run: :mod:`.observing`) are built by Celery.

This module holds the rules both transports share (which runs take a shape, a
run's body); each transport keeps its shapes in its own form:
:mod:`.redis_messages` (kombu's Redis commands), :mod:`.amqp_messages` (AMQP
frames).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping
from typing import Any, Generic, Protocol, TypeVar

from celery import Celery
from celery.beat import _evaluate_entry_args, _evaluate_entry_kwargs  # what beat's apply_async passes on
from celery.signals import after_task_publish, before_task_publish
from celery.utils.saferepr import saferepr
from kombu.serialization import dumps as serialize

from .headers import HEADER, PER_RUN
from .observing import observed
from .sending import refused_arguments

#: Options that make a message more than its shape and body: such a run is always built by Celery.
OWN_OPTIONS = frozenset({"countdown", "eta", "expires", "serializer", "compression", "argsrepr", "kwargsrepr",
                         "shadow", "link", "link_error", "chain", "chord", "group_id", "parent_id", "root_id"})

#: The headers beat sets on each run: a user's header of the same name is replaced, so it does not make a shape.
OWN_HEADERS = frozenset({HEADER, *PER_RUN})

#: Seconds a shape is reused: exchange bindings changed meanwhile are seen within it.
SHAPE_SECONDS = 60.0

#: Most shapes kept (one per task and options; a schedule rarely has more than a few hundred).
SHAPES = 10_000

#: Most serialized bodies kept: enough for the entries that run again soon; a body costs ~10 us to make again,
#: and each kept one holds its parsed definition, so beat's memory stays flat however many entries run.
BODIES = 4_096


#: A run's body as the transport sends it, with its argsrepr and kwargsrepr (:meth:`ShapeRules.body`).
Body = tuple[str, str, str]


class Embedding(Protocol):
    """A kept shape: a message Celery built, whose body's third part a run's args and kwargs go beside."""

    @property
    def embed(self) -> Any: ...


M = TypeVar("M")
S = TypeVar("S", bound=Embedding)


class Shapes(Protocol[M, S]):
    """Messages filled in from the shapes Celery built, for one transport (:mod:`.redis_messages`, :mod:`.amqp_messages`)."""

    #: Which runs take a shape (the same for every transport).
    rules: ShapeRules
    #: The shapes learned so far, by key.
    kept: KeptShapes[S]

    def fill_in(self, shape: S, serialized: Body, headers: dict[str, str], task_id: str) -> list[M]: ...

    def learn(self, key: str, messages: list[M], task_id: str) -> None: ...


def render(shapes: Shapes[M, S], key: str, definition: Any, headers: dict[str, str], task_id: str) -> list[M] | None:
    """The messages of a run of ``definition`` with ``task_id`` and its own ``headers``
    (:func:`~.sending.run_headers`), filled in from the shape kept for ``key``; None when none is kept."""
    shape = shapes.kept.get(key)
    if shape is None:
        return None
    return shapes.fill_in(shape, shapes.rules.body(definition, shape.embed), headers, task_id)


class Taking(Protocol[M]):
    """A capture of what a transport would send: the messages of the run just built."""

    def take(self) -> list[M]: ...


class KeptShapes(Generic[S]):
    """The shapes one transport learned, by key: at most :data:`SHAPES`, each used for :data:`SHAPE_SECONDS`."""

    def __init__(self) -> None:
        self._kept: dict[str, tuple[float, S]] = {}

    def get(self, key: str) -> S | None:
        """The shape of ``key``, None when there is none or it is too old to use."""
        found = self._kept.get(key)
        if found is None or time.monotonic() - found[0] > SHAPE_SECONDS:
            return None
        return found[1]

    def keep(self, key: str, shape: S) -> None:
        """Keep ``shape`` for ``key`` (all are forgotten once :data:`SHAPES` are kept)."""
        if len(self._kept) >= SHAPES:
            self._kept.clear()
        self._kept[key] = (time.monotonic(), shape)

    def __len__(self) -> int:
        return len(self._kept)


class ShapeRules:
    """Which runs take a shape, and a run's body, as Celery would make them for ``app`` (``body_encoding``: base64
    on kombu's Redis transport, ``text`` on AMQP); ``events``: the transport fills in the ``task-sent`` event a run's
    message comes with (``task_send_sent_event``), else such runs are built by Celery."""

    def __init__(self, app: Celery, body_encoding: str = "base64", events: bool = False) -> None:
        self.app = app
        self.body_encoding = body_encoding
        conf = app.conf  # read once: a lookup in Celery's settings costs more than filling in a message
        #: Whether each message must be built by Celery whatever its options (compression, a sent event not filled in).
        self.always_celery = bool(conf.task_compression or (conf.task_send_sent_event and not events))
        self.serializer = conf.task_serializer
        self.repr_sizes = (app.amqp.argsrepr_maxsize, app.amqp.kwargsrepr_maxsize, conf.task_repr_maxlevels)
        #: Serialized body, argsrepr and kwargsrepr by definition (held, so its id is not reused).
        self.bodies: dict[int, tuple[object, str, str, str]] = {}

    def key(self, task: str, options: Mapping[str, Any]) -> str | None:
        """The shape a run of ``task`` with ``options`` takes; None when it must be built by Celery."""
        if (self.always_celery or before_task_publish.receivers or after_task_publish.receivers
                or not OWN_OPTIONS.isdisjoint(options) or observed()):
            return None
        headers = {k: v for k, v in (options.get("headers") or {}).items() if k not in OWN_HEADERS}
        rest = {k: v for k, v in options.items() if k not in ("headers", "task_id")}
        return json.dumps([task, rest, headers], sort_keys=True, default=repr)

    def body(self, definition: Any, embed: Any) -> Body:
        """The body of ``definition``'s runs (``embed`` its third part) as the transport sends it, with its argsrepr
        and kwargsrepr: base64 for the Redis transport, else the serialized text.

        Raises:
            ArgumentsRefused: the task's signature refuses its arguments, as Celery would have said building it.
        """
        kept = self.bodies.get(id(definition))
        if kept is not None and kept[0] is definition:
            return kept[1], kept[2], kept[3]
        refused = refused_arguments(self.app, definition)
        if refused is not None:
            raise refused
        args, kwargs = _evaluate_entry_args(definition.args), _evaluate_entry_kwargs(definition.kwargs)
        args_size, kwargs_size, levels = self.repr_sizes
        _, _, data = serialize((args, kwargs, embed), serializer=self.serializer)
        data = data if isinstance(data, bytes) else data.encode("utf-8")
        body = base64.b64encode(data).decode("ascii") if self.body_encoding == "base64" else data.decode("utf-8")
        argsrepr = saferepr(args, args_size, maxlevels=levels)
        kwargsrepr = saferepr(kwargs, kwargs_size, maxlevels=levels)
        if len(self.bodies) >= BODIES:
            self.bodies.clear()
        self.bodies[id(definition)] = (definition, body, argsrepr, kwargsrepr)
        return body, argsrepr, kwargsrepr
