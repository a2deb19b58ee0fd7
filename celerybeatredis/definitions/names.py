"""What an entry's name may be, and how a stored name that breaks those rules is shown.

A name is written into beat's log, the ``list`` table, the dashboard and
URLs, so a line break, a control character or a bidirectional override in it
would forge log lines or make one name look like another. Every door refuses
such names with :func:`check_name`; a name already stored with them (written
by redis-cli) is shown through :func:`shown_name`, escaped.
"""

from __future__ import annotations

from ..exceptions import InvalidDefinition

#: The longest name, in characters (the same limit as a calendar's name).
NAME_LIMIT = 200



def name_problem(name: object) -> str | None:
    """Why ``name`` cannot name an entry, or None when it can."""
    if not isinstance(name, str) or not name:
        return "an entry needs a non-empty name"
    if len(name) > NAME_LIMIT:
        return f"is {len(name)} characters long; the limit is {NAME_LIMIT}"
    if not name.isprintable():  # controls, format characters (direction overrides, zero-width), separators but ' '
        char = next(c for c in name if not c.isprintable())
        return f"holds the character {_escaped(char)}; names are printable text (no control or direction characters)"
    if name != name.strip():
        return "starts or ends with white space"
    if any(part in (".", "..") for part in name.split("/")):
        return "has a '.' or '..' path segment"
    return None


def check_name(name: object) -> str:
    """``name``, if it may name an entry.

    Raises:
        InvalidDefinition: for field ``name``, naming the entry (escaped when the message is printed) and the
            rule it breaks.
    """
    problem = name_problem(name)
    if problem is not None:
        raise InvalidDefinition("name", problem, name if isinstance(name, str) else None)
    assert isinstance(name, str)
    return name


def shown_name(name: str) -> str:
    """``name`` with anything not printable escaped (``\\n``, ``\\u202e``), so that it reads as one plain line."""
    if name.isprintable():
        return name
    return "".join(c if c.isprintable() else _escaped(c) for c in name)


def _escaped(char: str) -> str:
    return repr(char)[1:-1] if char in "\n\r\t" else f"\\u{ord(char):04x}" if ord(char) < 0x10000 else f"\\U{ord(char):08x}"
