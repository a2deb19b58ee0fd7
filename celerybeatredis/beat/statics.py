"""``beat_schedule`` kept in Redis: its entries (statics) written as definitions, and statics that left it removed.

Only statics beat wrote are ever removed or overwritten: a dynamic entry (one
added in Redis) of the same name wins, and is named in a warning.
"""

from __future__ import annotations

from celery import Celery
from celery.schedules import crontab

from ..definitions.codec import Codec, dump_document, entry_to_document
from ..exceptions import InvalidDefinition
from ..observe.log import logger
from ..storage.sharded_store import ShardedStore

#: Definitions written (or names removed) per script call.
STATIC_CHUNK = 500


def static_documents(app: Celery, codec: Codec) -> tuple[dict[str, str], set[str]]:
    """``beat_schedule`` (plus Celery's default entries) as definition JSON.

    Returns:
        ``(documents, rejected)``: valid entries by name, and names whose
        config entry is invalid (logged, and left as they are in Redis).
    """
    entries = dict(app.conf.beat_schedule or {})
    if app.conf.result_expires and not app.backend.supports_autoexpire:
        entries.setdefault(
            "celery.backend_cleanup",
            {"task": "celery.backend_cleanup", "schedule": crontab("0", "4", "*"), "options": {"expires": 12 * 3600}},
        )
    documents: dict[str, str] = {}
    rejected: set[str] = set()
    for name, entry in entries.items():
        try:
            doc = entry_to_document(entry)
            codec.from_document(doc)
            documents[name] = dump_document(doc)
        except InvalidDefinition as exc:
            logger.error("beat: beat_schedule %s; entry not synced", exc.for_entry(name).reason)
            rejected.add(name)
    return documents, rejected


def sync_statics(store: ShardedStore, app: Celery, codec: Codec) -> None:
    """Upsert ``beat_schedule`` entries, remove statics that left it, then mark the schedule synced (``{T}:synced``)."""
    documents, rejected = static_documents(app, codec)
    names = list(documents)
    written = 0
    for i in range(0, len(names), STATIC_CHUNK):
        chunk = {n: documents[n] for n in names[i : i + STATIC_CHUNK]}
        done = store.put_raw(chunk, static=True)
        written += done.written
        for name in done.skipped:
            logger.warning("beat: beat_schedule entry %r not synced: a dynamic entry of that name exists in Redis", name)
        for name in done.overwritten:
            logger.warning(
                "beat: beat_schedule entry %r overwrote its definition in Redis, which had been changed there; "
                "edit beat_schedule, or use another name for an entry managed in Redis", name
            )
    stale = [n for n in store.across.iter_static_names() if n not in documents and n not in rejected]
    for i in range(0, len(stale), STATIC_CHUNK):
        store.remove_names(stale[i : i + STATIC_CHUNK])
    store.mark_synced()
    logger.info("beat: beat_schedule synced: %d entries, %d changed, %d removed", len(documents), written, len(stale))
