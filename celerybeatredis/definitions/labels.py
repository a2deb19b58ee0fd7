"""The ``labels`` member: an entry's own ``key: value`` strings, bounded, and the selectors that filter by them.

Labels say who or what an entry is for (``team: billing``); beat never acts
on them, and they are no metrics label (their count is the schedule's). They
are bounded so one entry cannot bloat every page that lists it: at most
:data:`MAX_LABELS`, each key matching :data:`KEY_PATTERN`, each value a
string of at most :data:`MAX_VALUE` characters. The key :data:`OWNER` is
``celerybeatredis apply``'s: the entries it manages carry the owner's name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from ..exceptions import InvalidDefinition
from .checks import json_type

#: Most labels on one entry.
MAX_LABELS = 32
#: Longest key, in characters.
MAX_KEY = 63
#: Longest value, in characters.
MAX_VALUE = 256
#: A key: letters, digits, ``.``, ``_``, ``-`` and ``/``, starting and ending with a letter or digit.
KEY_PATTERN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?")
#: The label ``apply`` marks the entries of an owner with.
OWNER = "owner"


def check_key(key: Any, field: str = "labels") -> str:
    """``key`` if it is a label key, else an error naming ``field``."""
    if not isinstance(key, str) or KEY_PATTERN.fullmatch(key) is None:
        raise InvalidDefinition(field, f"{key!r} is not a label key (1 to {MAX_KEY} letters, digits, '.', '_', "
                                       "'-' or '/', starting and ending with a letter or digit)")
    return key


def parse_labels(value: Any) -> dict[str, str]:
    """The ``labels`` member: a JSON object of at most :data:`MAX_LABELS` string values; an error names ``labels.<key>``."""
    if not isinstance(value, dict):
        raise InvalidDefinition("labels", f"must be a JSON object of strings, not {json_type(value)}")
    if len(value) > MAX_LABELS:
        raise InvalidDefinition("labels", f"has {len(value)} labels (at most {MAX_LABELS})")
    for key, label in value.items():
        check_key(key)
        if not isinstance(label, str):
            raise InvalidDefinition(f"labels.{key}", f"must be a string, not {json_type(label)}")
        if len(label) > MAX_VALUE:
            raise InvalidDefinition(f"labels.{key}", f"is {len(label)} characters long (at most {MAX_VALUE})")
    return value


def parse_pair(text: str, option: str = "--label") -> tuple[str, str]:
    """``key=value`` -> ``(key, value)``.

    Raises:
        ValueError: naming ``option``.
    """
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep:
        raise ValueError(f"{option}: {text!r} is not KEY=VALUE")
    try:
        check_key(key, option)
    except InvalidDefinition as exc:
        raise ValueError(str(exc)) from None
    return key, value.strip()


def parse_pairs(texts: Iterable[str], option: str = "--label") -> dict[str, str]:
    """Several ``key=value`` (a later one wins), as a selector or labels to set.

    Raises:
        ValueError: naming ``option``.
    """
    return dict(parse_pair(text, option) for text in texts)


def split_pairs(text: str) -> list[str]:
    """``team=billing, env=prod`` (commas or lines between pairs), as the dashboard takes labels -> its pairs."""
    return [part for line in text.splitlines() for part in (p.strip() for p in line.split(",")) if part]


def labels_of(doc: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """A definition's labels, empty when it has none (or a stored one has no object there)."""
    labels = (doc or {}).get("labels")
    return labels if isinstance(labels, dict) else {}


def matches(doc: Mapping[str, Any] | None, selector: Mapping[str, str]) -> bool:
    """Whether the definition carries every label of ``selector`` (an empty selector matches all)."""
    if not selector:
        return True
    labels = labels_of(doc)
    return all(labels.get(key) == value for key, value in selector.items())


def edited(current: Mapping[str, Any] | None, setting: Mapping[str, str], dropping: Iterable[str]) -> dict[str, str]:
    """``current``'s labels with ``setting`` set and ``dropping`` dropped."""
    labels = {**labels_of(current), **setting}
    for key in dropping:
        labels.pop(key, None)
    return labels


def shown(labels: Mapping[str, Any]) -> str:
    """``team=billing, env=prod``: how ``show`` and the form write labels."""
    return ", ".join(f"{key}={value}" for key, value in labels.items())
