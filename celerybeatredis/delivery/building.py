"""A batch's task messages as the broker's transport would send them: Redis commands, or AMQP messages.

The first run of each task and options is built by Celery and kombu
(``before_task_publish`` / ``after_task_publish`` fire) and captured, the next
from its shape (:mod:`.shapes`); a run whose headers are its own (a past due
time, a report asked of the worker integration, its scheduled time as a keyword argument) is built by Celery every
time.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from typing import Any

from celery import Celery
from celery.utils import uuid
from kombu import Producer

from ..decisions.planner import Planned
from ..definitions.names import shown_name
from ..observe.log import logger
from .amqp_messages import AmqpShapes, capturing_amqp
from .confirms import ConfirmChannel
from .redis_messages import RedisShapes, capturable, capturing
from .sending import ArgumentsRefused, Sender, chosen_task_id, reported, run_headers
from .shapes import M, S, Shapes, Taking, render

#: A batch's messages by plan index, and the error of each run whose message could not be built.
Built = tuple[dict[int, list[Any]], dict[int, BaseException]]


class MessageBuilder:
    """Builds batches' messages for ``app``, through ``sender`` (Celery's way, captured) and the shapes it learns;
    a run's task id is chosen as for a run of the schedule ``schedule_tag``.

    AMQP shapes are learned again once ``confirms`` lost its channel (maybe the
    connection): Celery then declares each route again.
    """

    def __init__(self, app: Celery, sender: Sender, confirms: ConfirmChannel, schedule_tag: str) -> None:
        self.app = app
        self.sender = sender
        self.confirms = confirms
        self.schedule_tag = schedule_tag
        self.redis_shapes: RedisShapes | None = None
        self.amqp_shapes: AmqpShapes | None = None

    def build(self, producer: Producer, planned: Planned, committed: list[bool] | None, tids: dict[int, str] | None,
              tag: str) -> Built:
        """The messages of each run of ``planned`` (those ``committed`` says, if given), by plan index, with the
        task ids ``tids`` gives (else :func:`~.sending.chosen_task_id`); and the errors of the runs that could not be
        built. ``tag`` is the hash tag of the batch's shard, which the worker integration reports to."""
        if capturable(producer):
            if self.redis_shapes is None:
                self.redis_shapes = RedisShapes(self.app, getattr(producer.channel, "body_encoding", "base64"))
            return self._build(self.redis_shapes, capturing(producer), producer, planned, committed, tids, tag)
        if self.amqp_shapes is None or self.amqp_shapes.generation != self.confirms.generation:
            self.amqp_shapes = AmqpShapes(self.app, self.confirms.generation)
        return self._build(self.amqp_shapes, capturing_amqp(producer), producer, planned, committed, tids, tag)

    def _build(self, shapes: Shapes[M, S], capturer: AbstractContextManager[Taking[M]], producer: Producer,
               planned: Planned, committed: list[bool] | None, tids: dict[int, str] | None,
               tag: str) -> tuple[dict[int, list[M]], dict[int, BaseException]]:
        """:meth:`build` with one transport's shapes and capture."""
        messages: dict[int, list[M]] = {}
        unbuilt: dict[int, BaseException] = {}
        info = logger.isEnabledFor(logging.INFO)
        with capturer as capture:
            for j, decision in enumerate(planned.decisions):
                run = decision.run
                if run is None or (committed is not None and not committed[j]):
                    continue
                name, defn = decision.name, run.definition
                tid = (tids or {}).get(j) or chosen_task_id(self.schedule_tag, decision) or uuid()
                key = (None if run.scheduled_at or reported(defn) or defn.scheduled_time_kwarg
                       else shapes.rules.key(defn.task, defn.options))
                try:
                    built = (render(shapes, key, defn, run_headers(name, tid, run.fire_time, run.stamp, tag), tid)
                             if key is not None else None)
                except ArgumentsRefused as exc:  # as Celery would have refused it: the entry's fault
                    unbuilt[j] = exc
                    continue
                if built is None:
                    error = self.sender.send(name, run, planned.now, producer, tid, tag, decision.entry.score)
                    built = capture.take()
                    if error is not None:
                        unbuilt[j] = error
                        continue
                    if key is not None:
                        shapes.learn(key, built, tid)
                elif info:
                    logger.info("Scheduler: Sending due task %s (%s)", shown_name(name), defn.task)
                messages[j] = built
        return messages, unbuilt
