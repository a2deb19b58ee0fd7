"""Labels on the dashboard: the entries filter, and the add / edit form's labels field."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from celerybeatredis.store import ScheduleStore
from celerybeatredis.web.forms import FormError, definition_from_form
from celerybeatredis.web.pages import form_values
from celerybeatredis.web.queries import Filters, list_entries

from ..support import web as harness
from ..support.web import WebServer, request

web = harness.web  # the harness's fixture, for this module's tests

EVERY = {"interval": {"every": 60, "period": "seconds"}}


def test_the_entries_filter_keeps_entries_with_every_label_given(api: ScheduleStore, web: WebServer) -> None:
    api.bulk_add({
        "a": {"task": "t.a", **EVERY, "labels": {"team": "billing", "env": "prod"}},
        "b": {"task": "t.b", **EVERY, "labels": {"team": "billing"}},
        "c": {"task": "t.c", **EVERY},
    })
    assert sorted(e.name for e in list_entries(api, Filters(label="team=billing")).entries) == ["a", "b"]
    assert [e.name for e in list_entries(api, Filters(label="team=billing, env=prod")).entries] == ["a"]
    assert list_entries(api, Filters(q="c", label="team=billing")).exact is None
    page = request(web.base, "/entries?" + urlencode({"label": "team=billing, env=prod"}))
    assert page.status == 200 and ">a<" in page.body and ">b<" not in page.body
    bad = request(web.base, "/entries?" + urlencode({"label": "team"}))
    assert bad.status == 200 and "label: &#39;team&#39; is not KEY=VALUE" in bad.body


def test_the_form_reads_and_shows_labels() -> None:
    form = {"task": "t.x", "kind": "interval", "every": "60s", "labels": "team=billing, env=prod", "enabled": "on"}
    doc = definition_from_form(form)
    assert doc["labels"] == {"team": "billing", "env": "prod"}
    assert form_values(doc)["labels"] == "team=billing, env=prod"
    edited = definition_from_form({**form, "labels": ""}, current=doc)  # emptied on an edit: the member goes
    assert "labels" not in edited
    with pytest.raises(FormError, match="labels: 'team' is not KEY=VALUE"):
        definition_from_form({**form, "labels": "team"})
