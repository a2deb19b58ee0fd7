"""What the dashboard's pages and actions share: the store, the settings it runs with, and its templates."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from ..definitions.names import shown_name
from ..managing.display import describe_schedule, duration, last_run, next_run, relative, result_text
from ..settings import Settings
from ..store import ScheduleStore
from .auth import CSRF_FIELD, WebAuth

#: The web package's folder: its templates and static files.
HERE = Path(__file__).parent


@dataclass
class WebConfig:
    """How the dashboard runs.

    Attributes:
        auth: Credentials every request must carry (none: loopback only).
        read_only: Refuse every write and show no actions.
        settings: The scheduler settings whose ``task_allowlist`` edits here must keep to.
        title: Shown in the header (the schedule's hash tags by default).
        redis_url: The schedule's Redis URL, named (password masked) by the one line every page answers
            with while Redis cannot be reached; the client's address when empty.
    """

    auth: WebAuth = field(default_factory=WebAuth)
    read_only: bool = False
    settings: Settings = field(default_factory=Settings)
    title: str = ""
    redis_url: str = ""


def _templates() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["schedule_words"] = describe_schedule
    env.filters["duration"] = duration
    env.filters["result_text"] = result_text
    env.filters["shown"] = shown_name  # a stored name's control and direction characters, escaped
    env.filters["iso"] = lambda when: when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if when else "-"
    env.globals.update(next_run=next_run, last_run=last_run, relative=relative)
    return env


class Dashboard:
    """What the routes share: the store, the config, the templates."""

    def __init__(self, store: ScheduleStore, config: WebConfig) -> None:
        self.store = store
        self.config = config
        self.templates = _templates()

    def now(self) -> datetime:
        """The Redis server's clock, which every beat shares."""
        return datetime.fromtimestamp(self.store.server_time(), timezone.utc)

    def render(self, request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        page = self.templates.get_template(template).render(
            request=request, csrf_field=CSRF_FIELD, csrf_token=request.state.csrf, read_only=self.config.read_only,
            title=self.config.title or self.store.tags, user=request.state.user, **context)
        return HTMLResponse(page, status_code=status_code)
