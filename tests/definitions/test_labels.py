"""The ``labels`` member: read, bounded, refused in one line naming ``labels.<key>``, and the selectors of filters."""

from __future__ import annotations

from typing import Any

import pytest
from celery import Celery

from celerybeatredis.definitions.codec import Codec
from celerybeatredis.definitions.labels import MAX_LABELS, MAX_VALUE, edited, matches, parse_pairs, split_pairs
from celerybeatredis.exceptions import InvalidDefinition

EVERY = {"task": "tasks.x", "interval": {"every": 60, "period": "seconds"}}


@pytest.fixture
def codec() -> Codec:
    return Codec(Celery("labels", set_as_current=False))


def test_labels_are_kept_on_the_definition(codec: Codec) -> None:
    definition = codec.from_document({**EVERY, "labels": {"team": "billing", "app.kubernetes.io/part-of": "x", "e": ""}})
    assert dict(definition.labels) == {"team": "billing", "app.kubernetes.io/part-of": "x", "e": ""}
    assert dict(codec.from_document(EVERY).labels) == {}


@pytest.mark.parametrize(("labels", "field", "words"), [
    ([], "labels", "must be a JSON object of strings, not an array"),
    ({"team": 3}, "labels.team", "must be a string, not a number"),
    ({"team": None}, "labels.team", "must be a string, not null"),
    ({"team": "x" * (MAX_VALUE + 1)}, "labels.team", f"is {MAX_VALUE + 1} characters long (at most {MAX_VALUE})"),
    ({"": "x"}, "labels", "'' is not a label key"),
    ({"-team": "x"}, "labels", "'-team' is not a label key"),
    ({"te am": "x"}, "labels", "'te am' is not a label key"),
    ({"k" * 64: "x"}, "labels", "is not a label key (1 to 63"),
    ({f"k{i}": "v" for i in range(MAX_LABELS + 1)}, "labels", f"has {MAX_LABELS + 1} labels (at most {MAX_LABELS})"),
])
def test_bad_labels_are_refused_naming_the_field(codec: Codec, labels: Any, field: str, words: str) -> None:
    with pytest.raises(InvalidDefinition) as caught:
        codec.from_document({**EVERY, "labels": labels})
    assert caught.value.field == field
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_the_bounds_themselves_are_accepted(codec: Codec) -> None:
    labels = {f"k{i}": "v" * MAX_VALUE for i in range(MAX_LABELS - 1)} | {"k" * 63: ""}
    assert len(codec.from_document({**EVERY, "labels": labels}).labels) == MAX_LABELS


def test_selectors_and_edits() -> None:
    assert parse_pairs(["team=billing", "env = prod", "team=ops"]) == {"team": "ops", "env": "prod"}
    assert split_pairs("team=billing, env=prod\nzone=a") == ["team=billing", "env=prod", "zone=a"]
    with pytest.raises(ValueError, match="--label: 'team' is not KEY=VALUE"):
        parse_pairs(["team"])
    with pytest.raises(ValueError, match="'-x' is not a label key"):
        parse_pairs(["-x=1"])
    doc = {"labels": {"team": "billing", "env": "prod"}}
    assert matches(doc, {"team": "billing"}) and matches(doc, {}) and matches(None, {})
    assert not matches(doc, {"team": "billing", "env": "dev"}) and not matches({}, {"team": "billing"})
    assert edited(doc, {"zone": "a"}, ["env"]) == {"team": "billing", "zone": "a"}
