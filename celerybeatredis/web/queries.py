"""What the pages show, read with bounded commands: counts, ZCOUNT buckets, HSCAN pages, one entry's keys.

Nothing here reads the whole schedule: a listing page scans at most
:data:`SCAN_BUDGET` hash slots (and stops sooner when the page is full) and
hands back the cursor to go on from, so a rare filter over a million entries
costs a few pages of "nothing here yet, go on", never one long request.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from fnmatch import fnmatchcase
from typing import Any

from ..definitions.documents import decode
from ..definitions.kinds import KINDS
from ..definitions.labels import matches, parse_pairs, split_pairs
from ..managing.records import Entry
from ..observe.status import Status, schedule_status
from ..store import ScheduleStore

#: Entries a listing page shows at most.
PAGE_SIZE = 50
#: Hash slots one listing request scans at most before it returns what it found and a cursor.
SCAN_BUDGET = 20_000
#: Seconds one listing request scans at most (on a loaded server the slot budget alone could take longer).
TIME_BUDGET = 0.1
#: HSCAN COUNT hint per call.
SCAN_STEP = 1_000
#: Minutes the overview's chart covers.
CHART_MINUTES = 24 * 60

_GLOB = re.compile(r"[*?\[\]\\]")


@dataclass(frozen=True)
class Filters:
    """The listing's filters, as the query string gives them ('' = any)."""

    q: str = ""
    task: str = ""
    kind: str = ""
    enabled: str = ""
    paused: str = ""
    quarantined: str = ""
    static: str = ""
    #: "yes": only entries whose last reported run failed (or was lost); "no": the others. Reads their history.
    failing: str = ""
    #: ``team=billing, env=prod``: only entries with every one of these labels.
    label: str = ""

    @property
    def match(self) -> str | None:
        """The HSCAN MATCH pattern: ``q`` as a glob if it has glob characters, else as a name prefix."""
        if not self.q:
            return None
        return self.q if _GLOB.search(self.q) else _GLOB.sub(lambda m: "\\" + m.group(0), self.q) + "*"

    def query(self) -> dict[str, str]:
        return {k: v for k, v in self.__dict__.items() if v}


@dataclass
class Listing:
    """One page of the entries listing."""

    entries: list[Entry]
    cursor: int
    scanned: int
    exact: Entry | None = None
    filters: Filters = field(default_factory=Filters)
    #: Why the filters cannot be used (a label that is no ``key=value``); no entries then.
    error: str | None = None

    @property
    def done(self) -> bool:
        return self.cursor == 0


def kind_of(doc: dict[str, Any] | None) -> str:
    """The schedule kind a definition uses ('' if none)."""
    if not doc:
        return ""
    return next((name for name in KINDS if doc.get(name) is not None), "")


def _definition_wanted(filters: Filters) -> Callable[[bytes], bool]:
    selector = parse_pairs(split_pairs(filters.label), "label") if filters.label else {}

    def wanted(raw: bytes) -> bool:
        _, doc = decode(raw)
        if selector and not matches(doc, selector):
            return False
        if filters.task and not fnmatchcase(str((doc or {}).get("task", "")), filters.task):
            return False
        if filters.kind and kind_of(doc) != filters.kind:
            return False
        if filters.enabled:
            enabled = doc is not None and doc.get("enabled", True) is not False
            if enabled is not (filters.enabled == "yes"):
                return False
        return True
    return wanted


def is_paused(entry: Entry) -> bool:
    """Whether the entry is paused (its definition holds a pause)."""
    return entry.paused is not None


def _state_wanted(filters: Filters, entry: Entry) -> bool:
    if filters.quarantined and (entry.invalid_reason is not None) is not (filters.quarantined == "yes"):
        return False
    if filters.static and entry.static is not (filters.static == "yes"):
        return False
    return not (filters.paused and is_paused(entry) is not (filters.paused == "yes"))


def list_entries(store: ScheduleStore, filters: Filters, cursor: int = 0, page_size: int = PAGE_SIZE,
                 budget: int = SCAN_BUDGET) -> Listing:
    """A page of entries passing ``filters`` from ``cursor`` on, scanning at most ``budget`` slots."""
    try:
        wanted = _definition_wanted(filters)
    except ValueError as exc:
        return Listing(entries=[], cursor=0, scanned=0, filters=filters, error=str(exc))
    found: list[Entry] = []
    scanned = 0
    step = page_size  # grows while batches match little, so a batch never brings many more entries than a page
    deadline = time.monotonic() + TIME_BUDGET
    quarantine_only = filters.quarantined == "yes"  # the quarantine hash is small: scan it instead of every definition
    while True:
        if quarantine_only:
            cursor, reasons = store.sharded.across.scan_invalid(cursor, step, filters.match)
            candidates = [e for e in store.find([name for name, _ in reasons]) if e is not None and wanted(e.raw.encode())]
        else:
            cursor, page = store.sharded.across.scan_definitions(cursor, step, filters.match)
            names = [name for name, raw in page if wanted(raw)]
            candidates = [e for e in store.find(names) if e is not None] if names else []
        scanned += step
        matched = [e for e in candidates if _state_wanted(filters, e)]
        if filters.failing in ("yes", "no"):
            matched = [e for e in matched if _failing_wanted(store, filters, e)]
        found.extend(matched)
        if len(matched) * 2 < page_size:
            step = min(step * 2, SCAN_STEP, max(1, budget - scanned))
        if cursor == 0 or len(found) >= page_size or scanned >= budget or time.monotonic() > deadline:
            break
    exact = None
    if filters.q and not _GLOB.search(filters.q):
        hit = store.find([filters.q])[0]
        if hit is not None and _state_wanted(filters, hit) and wanted(hit.raw.encode()) and _failing_wanted(store, filters, hit):
            exact = hit
            found = [e for e in found if e.name != hit.name]
    return Listing(entries=found, cursor=cursor, scanned=scanned, exact=exact, filters=filters)


def _failing_wanted(store: ScheduleStore, filters: Filters, entry: Entry) -> bool:
    """Whether ``entry`` passes the "last run failed" filter (reads its history only when the filter is set)."""
    if filters.failing not in ("yes", "no"):
        return True
    return store.history(entry.name).failing is (filters.failing == "yes")


@dataclass(frozen=True)
class Overview:
    """The overview page's figures."""

    status: Status
    scheduled: int
    never: int
    pending: int
    #: Entries next due in each minute from ``start`` on (CHART_MINUTES of them).
    per_minute: list[int]
    start: datetime


def overview(store: ScheduleStore) -> Overview:
    """Beats, counts and the next 24 hours' due curve, from a few commands per shard and pipelined ZCOUNTs."""
    status = schedule_status(store.sharded)
    start = (int(status.now) // 60 + 1) * 60  # the next whole minute
    per_minute = [0] * CHART_MINUTES
    for shard in store.sharded.stores:
        pipe = shard.client.pipeline(transaction=False)
        for minute in range(CHART_MINUTES):
            low = start + minute * 60
            pipe.zcount(shard.keys.due, low, f"({low + 60}")
        for minute, counted in enumerate(pipe.execute()):
            per_minute[minute] += int(counted)
    return Overview(
        status=status,
        scheduled=store.sharded.across.count_scores("(0", "(inf"),
        never=store.sharded.across.count_scores("inf", "inf"),
        pending=store.sharded.across.count_scores("-inf", 0),
        per_minute=per_minute,
        start=datetime.fromtimestamp(start, timezone.utc),
    )


@dataclass(frozen=True)
class Bar:
    """One bar of the due chart (an SVG rect)."""

    x: int
    height: float
    title: str


def chart_bars(view: Overview, height: int = 120) -> tuple[list[Bar], int]:
    """The chart's bars, scaled to ``height`` pixels, and the tallest count."""
    peak = max(view.per_minute, default=0)
    bars = []
    for minute, counted in enumerate(view.per_minute):
        if counted:
            at = datetime.fromtimestamp(view.start.timestamp() + minute * 60, timezone.utc)
            bars.append(Bar(x=minute, height=max(1.0, counted / peak * height), title=f"{at:%H:%M} UTC: {counted} due"))
    return bars, peak
