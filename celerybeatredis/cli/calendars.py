"""``calendar``: named sets of excluded days that entries refer to with ``exclude``."""

from __future__ import annotations

import click

from ..definitions.calendars import InvalidCalendar
from .base import Context, dumps, json_option, pass_context


@click.group("calendar")
def calendar_group() -> None:
    """Manage calendars of excluded days (entries name them in "exclude")."""


@calendar_group.command("set")
@click.argument("name")
@click.option("--date", "dates", multiple=True, metavar="YYYY-MM-DD", help="An excluded day (repeatable).")
@click.option("--range", "ranges", multiple=True, metavar="FIRST:LAST", help="Excluded days, both included (repeatable).")
@click.option("--weekday", "weekdays", multiple=True, metavar="DAY", help="An excluded weekday: mon .. sun (repeatable).")
@click.option("--description", default="", help="Free text.")
@pass_context
def set_command(obj: Context, name: str, dates: tuple[str, ...], ranges: tuple[str, ...], weekdays: tuple[str, ...],
                description: str) -> None:
    """Create or replace a calendar (the whole calendar: give every day it excludes)."""
    pairs = []
    for item in ranges:
        first, sep, last = item.partition(":")
        if not sep:
            raise click.BadParameter(f"{item!r} is not FIRST:LAST", param_hint="--range")
        pairs.append((first, last))
    new = obj.store.set_calendar(name, dates=dates, ranges=pairs, weekdays=weekdays, description=description)
    click.echo(f"{'created' if new else 'replaced'} calendar {name}")


@calendar_group.command("list")
@json_option
@pass_context
def list_command(obj: Context, as_json: bool) -> None:
    """List calendars and what they exclude."""
    for name, calendar in sorted(obj.store.calendars().items()):
        if as_json:
            click.echo(dumps({"name": name, **(calendar.to_json() if not isinstance(calendar, InvalidCalendar)
                                               else {"invalid": str(calendar)})}))
        else:
            click.echo(f"{name}: {_summary(calendar)}")


@calendar_group.command("show")
@click.argument("name")
@json_option
@pass_context
def show_command(obj: Context, name: str, as_json: bool) -> None:
    """Show one calendar."""
    calendar = obj.store.calendar(name)
    doc = calendar.to_json()
    if as_json:
        click.echo(dumps({"name": name, **doc}))
        return
    click.echo(f"name:        {name}")
    for label in ("dates", "ranges", "weekdays", "description"):
        value = doc.get(label)
        if value:
            shown = ", ".join(f"{v[0]}..{v[1]}" if isinstance(v, list) else str(v) for v in value) \
                if isinstance(value, list) else value
            click.echo(f"{label + ':':<12} {shown}")


@calendar_group.command("remove")
@click.argument("name")
@click.option("--force", is_flag=True, help="Remove it even though entries name it in exclude (beat quarantines them).")
@pass_context
def remove_command(obj: Context, name: str, force: bool) -> None:
    """Delete a calendar; refused while entries name it in exclude, unless --force."""
    obj.store.remove_calendar(name, force=force)
    users, total = obj.store.calendar_users(name) if force else ([], 0)
    if not total:
        click.echo(f"removed calendar {name}")
        return
    more = f" and {total - len(users)} more" if total > len(users) else ""
    one = total == 1
    click.echo(f"removed calendar {name}; {'entry' if one else 'entries'} {', '.join(users)}{more} still "
               f"{'names' if one else 'name'} it in exclude: beat quarantines {'it' if one else 'them'} until the "
               f"calendar is set again or {'it is' if one else 'they are'} edited")


def _summary(calendar: object) -> str:
    if isinstance(calendar, InvalidCalendar):
        return f"invalid: {calendar.field}: {calendar.message}"
    doc = calendar.to_json()  # type: ignore[attr-defined]
    parts = [_count(len(doc["dates"]), "date"), _count(len(doc["ranges"]), "range")]
    if doc["weekdays"]:
        parts.append(",".join(doc["weekdays"]))
    if doc.get("description"):
        parts.append(doc["description"])
    return "; ".join(parts)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"
