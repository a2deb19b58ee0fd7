"""Schedules that know their next time after any moment: an ``rrule``, a crontab with seconds, an interval with a phase.

Each answers :meth:`timeline.next_after`; being due and the time left follow
from it, as Celery's crontab has them. Their times are worked out on the wall
clock of the schedule's zone and each is then placed on the time line as a
crontab's is: a wall time the spring-forward skips runs at the offset before
the jump (late by the jump), a wall time the fall-back repeats runs once, on
its first pass.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from celery import Celery
from celery.schedules import BaseSchedule, crontab, crontab_parser, schedstate, schedule
from dateutil import rrule as du

from ..exceptions import InvalidDefinition
from .checks import json_type
from .registry import NowFun

#: Occurrences looked at per question before a rule is taken as having no more (a rule all of whose
#: occurrences fall in one repeated hour cannot need more).
MAX_STEPS = 10_000
#: Around the time asked about, the span an offset change is looked for in: more than any zone's change.
_MARGIN = timedelta(hours=3)
#: The time left when a schedule has no more times: far off, yet a time can still be added to it.
NONE_LEFT = timedelta(days=1000 * 366)
_UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1)
#: Whole seconds of one period of each frequency that has a fixed length on the wall clock.
_FIXED = {du.WEEKLY: 7 * 86400, du.DAILY: 86400, du.HOURLY: 3600, du.MINUTELY: 60, du.SECONDLY: 1}


class timeline(BaseSchedule):
    """A schedule in ``zone`` that says its first time after a moment; ``spec`` is its member as written."""

    def __init__(self, zone: tzinfo, spec: Mapping[str, Any], nowfun: NowFun | None = None,
                 app: Celery | None = None) -> None:
        super().__init__(nowfun=nowfun, app=app)
        self.zone = zone
        #: The definition's member, as written: what the schedule is stored back as.
        self.spec = dict(spec)

    @property
    def tz(self) -> tzinfo:
        """The schedule's own zone (calendars and jitter read its days in it)."""
        return self.zone

    def next_after(self, moment: datetime) -> datetime | None:
        """The first time strictly after ``moment`` (naive = UTC), in UTC; None when there is none."""
        raise NotImplementedError

    def occurrences(self, after: datetime) -> Iterator[datetime]:
        """The times after ``after``, in UTC, soonest first (for previews and tests)."""
        at = self.next_after(after)
        while at is not None:
            yield at
            at = self.next_after(at)

    def remaining_estimate(self, last_run_at: datetime) -> timedelta:
        """Time from now to the first time after ``last_run_at`` (:data:`NONE_LEFT` when there is none)."""
        following = self.next_after(last_run_at)
        if following is None:
            return NONE_LEFT
        return following - self.now().astimezone(_UTC)

    def is_due(self, last_run_at: datetime) -> schedstate:
        """Due once a time after ``last_run_at`` has come; then the seconds to the one after now."""
        now = self.now().astimezone(_UTC)
        following = self.next_after(last_run_at)
        if following is None:
            return schedstate(False, math.inf)
        if following > now:
            return schedstate(False, (following - now).total_seconds())
        after = self.next_after(now)
        return schedstate(True, math.inf if after is None else (after - now).total_seconds())

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.spec}>"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and isinstance(other, timeline) and other.spec == self.spec

    def __hash__(self) -> int:
        return hash(str(sorted(self.spec.items())))


def utc(moment: datetime) -> datetime:
    """``moment`` in UTC (naive = UTC)."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=_UTC)).astimezone(_UTC)


def margin(zone: tzinfo, moment: datetime, local: datetime) -> timedelta:
    """How far before ``local``'s wall time a time may lie and still come after ``moment``: the size of an offset
    change within :data:`_MARGIN` of it (none, mostly)."""
    offset = local.utcoffset() or timedelta(0)
    shifts = [abs(((moment + d).astimezone(zone).utcoffset() or timedelta(0)) - offset) for d in (-_MARGIN, _MARGIN)]
    return max(shifts)


class zoned_rrule(timeline):
    """A dateutil ``rrule`` on naive wall times of ``zone``; due at each occurrence.

    dateutil expands a rule from its start on, so a rule without a count is
    restarted a whole number of periods later (the same occurrences) before
    each look: an old ``dtstart`` costs nothing.
    """

    def __init__(self, rule: du.rrule, zone: tzinfo, spec: Mapping[str, Any], nowfun: NowFun | None = None,
                 app: Celery | None = None) -> None:
        super().__init__(zone, spec, nowfun=nowfun, app=app)
        self.rule = rule
        self._restarted: tuple[int, du.rrule] = (0, rule)

    def next_after(self, moment: datetime) -> datetime | None:
        """The first occurrence strictly after ``moment`` (naive = UTC), in UTC; None when the rule has no more."""
        moment = utc(moment)
        local = moment.astimezone(self.zone)
        wall = local.replace(tzinfo=None) - margin(self.zone, moment, local)
        for step, occurrence in enumerate(self._after(wall)):
            at = occurrence.replace(tzinfo=self.zone).astimezone(_UTC)
            if at > moment:
                return at
            if step >= MAX_STEPS:
                break
        return None

    def _after(self, wall: datetime) -> Iterator[datetime]:
        try:
            return self._restart(wall).xafter(wall, inc=True)
        except (ValueError, OverflowError):
            return self.rule.xafter(wall, inc=True)

    def _restart(self, wall: datetime) -> du.rrule:
        """The rule started a whole number of its periods after its ``dtstart`` and before ``wall``: the same
        occurrences from there on, without expanding those before (a rule with a count is left as it is)."""
        rule = self.rule
        if rule._count is not None or wall <= rule._dtstart:
            return rule
        start, freq, every = rule._dtstart, rule._freq, rule._interval
        if freq in _FIXED:
            size = _FIXED[freq] * every
            periods = math.floor((wall - start).total_seconds() / size) - 1
            if periods <= 0:
                return rule
            moved = start + timedelta(seconds=periods * size)
        else:
            size = (12 if freq == du.YEARLY else 1) * every
            periods = ((wall.year - start.year) * 12 + wall.month - start.month) // size - 1
            if periods <= 0:
                return rule
            total = start.month - 1 + periods * size
            moved = start.replace(year=start.year + total // 12, month=total % 12 + 1)
        if self._restarted[0] == periods:
            return self._restarted[1]
        restarted = rule.replace(dtstart=moved)
        self._restarted = (periods, restarted)
        return restarted


class seconds_crontab(zoned_rrule):
    """A crontab with a ``second`` field: the same calendar as an rrule each minute of which runs at those seconds
    (Celery's crontab has no seconds). Its day of the week and of the month must both match, as in Celery's."""


class phased_interval(timeline):
    """Every ``every`` seconds at ``offset`` past each multiple of it since 1970-01-01 00:00 on the wall clock of
    ``zone``: the same slots for every beat and after a restart, wherever the last run fell."""

    def __init__(self, every: float, offset: float, zone: tzinfo, spec: Mapping[str, Any],
                 nowfun: NowFun | None = None, app: Celery | None = None) -> None:
        super().__init__(zone, spec, nowfun=nowfun, app=app)
        self.every = every
        self.offset = offset
        self._fixed = zone.utcoffset(None) if isinstance(zone, timezone) else None

    @classmethod
    def build(cls, spec: Mapping[str, Any], every: timedelta, relative: bool, nowfun: NowFun | None,
              app: Celery) -> BaseSchedule:
        """The interval ``spec`` (checked, of length ``every``): Celery's without an ``offset``, else one with that
        phase in its zone (else the app's)."""
        if spec.get("offset") is None:
            return schedule(every, relative=relative, nowfun=nowfun, app=app)
        if relative:
            raise InvalidDefinition("interval.offset", "cannot be used with relative (the offset fixes the slots)")
        zone = ZoneInfo(spec["timezone"]) if spec.get("timezone") else app.timezone
        seconds = every.total_seconds()
        return cls(seconds, seconds * spec["offset"] / spec["every"], zone, spec, nowfun=nowfun, app=app)

    def next_after(self, moment: datetime) -> datetime:
        """The first slot strictly after ``moment`` (naive = UTC), in UTC."""
        moment = utc(moment)
        every, offset = self.every, self.offset
        if self._fixed is not None:  # no offset changes: the slots in closed form
            shift = self._fixed.total_seconds()
            at = moment.timestamp() + shift
            return datetime.fromtimestamp(offset + (math.floor((at - offset) / every) + 1) * every - shift, _UTC)
        local = moment.astimezone(self.zone)
        wall = (local.replace(tzinfo=None) - _EPOCH - margin(self.zone, moment, local)).total_seconds()
        k = math.floor((wall - offset) / every)
        while True:
            slot = (_EPOCH + timedelta(seconds=offset + k * every)).replace(tzinfo=self.zone).astimezone(_UTC)
            if slot > moment:
                return slot
            k += 1


def crontab_with_seconds(cron: crontab, spec: dict[str, Any], nowfun: NowFun | None, app: Celery | None) -> seconds_crontab:
    """The crontab run at ``second`` of each of its minutes: Celery's crontab has no seconds, so its calendar is
    handed to dateutil as a rule (day of the week 0 is Sunday in cron, Monday in dateutil)."""
    value = spec["second"]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidDefinition("crontab.second", f"must be a string or an integer, not {json_type(value)}")
    try:
        seconds = crontab_parser(60).parse(str(value))
    except Exception as exc:  # noqa: BLE001 - Celery raises several types for bad specs
        raise InvalidDefinition("crontab.second", f"invalid value {value!r}: {exc}") from None
    rule = du.rrule(du.MINUTELY, dtstart=datetime(2000, 1, 1), bysecond=sorted(seconds), byminute=sorted(cron.minute),
                    byhour=sorted(cron.hour), bymonthday=sorted(cron.day_of_month), bymonth=sorted(cron.month_of_year),
                    byweekday=sorted((day + 6) % 7 for day in cron.day_of_week))
    zone = ZoneInfo(spec["timezone"]) if spec.get("timezone") else app.timezone if app is not None else timezone.utc
    return seconds_crontab(rule, zone, spec, nowfun=nowfun, app=app)
