"""Who may use the dashboard, and proof that a write came from its own pages.

No authentication is configured by default, and then the dashboard only
listens on a loopback address (the command refuses any other). With a token
or basic-auth users configured, every request must carry them: the token as
``Authorization: Bearer``, or in a cookie set by the login form; users by
HTTP basic auth. Secrets are compared in constant time and never logged.

Writes (every POST) also need the CSRF token: a random cookie that a form
echoes in a hidden field (double submit), and an Origin, when the browser
sends one, equal to the dashboard's own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from starlette.requests import Request

#: The cookie holding the CSRF token a form must echo.
CSRF_COOKIE = "cbr_csrf"
#: The form field (or ``X-CSRF-Token`` header) that echoes it.
CSRF_FIELD = "csrf_token"
#: The cookie the login form sets when a token is configured (a digest of it, never the token).
LOGIN_COOKIE = "cbr_login"


def is_local(host: str) -> bool:
    """Whether ``host`` is a loopback address (or ``localhost``): only this machine can connect to it."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class WebAuth:
    """The dashboard's credentials: a token, basic-auth users, or neither (loopback only)."""

    token: str | None = None
    users: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:  # never the secrets, whatever prints this
        return f"WebAuth(token={'set' if self.token else None}, users={sorted(self.users)})"

    @property
    def configured(self) -> bool:
        """Whether any credential is set (needed to listen on a non-loopback address)."""
        return bool(self.token or self.users)

    def login_digest(self) -> str:
        """The login cookie's value: a digest of the token, so the cookie never holds the token itself."""
        return hmac.new((self.token or "").encode(), b"celerybeatredis-web-login", hashlib.sha256).hexdigest()

    def check_token(self, offered: str) -> bool:
        """Whether ``offered`` is the configured token."""
        return bool(self.token) and hmac.compare_digest(offered.encode(), (self.token or "").encode())

    def user(self, request: Request) -> str | None:
        """Who the request is from: a user name, ``"token"``, ``"local"`` with no auth configured, or None if refused."""
        if not self.configured:
            return "local"
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and self.check_token(value.strip()):
            return "token"
        if self.token and hmac.compare_digest(request.cookies.get(LOGIN_COOKIE, "").encode(), self.login_digest().encode()):
            return "token"
        if scheme.lower() == "basic" and self.users:
            try:
                name, _, password = base64.b64decode(value.strip()).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return None
            expected = self.users.get(name)
            # compared even for an unknown name, so timing does not tell which names exist
            if hmac.compare_digest(password.encode(), (expected or secrets.token_hex(16)).encode()) and expected is not None:
                return name
        return None


def new_csrf_token() -> str:
    """A fresh random CSRF token for a browser that has none."""
    return secrets.token_urlsafe(32)


def csrf_problem(request: Request, submitted: str | None) -> str | None:
    """None when a write may go ahead; else why not (the cookie and the echoed token differ, or a foreign origin)."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    offered = submitted or request.headers.get("x-csrf-token", "")
    if not cookie or not offered or not hmac.compare_digest(cookie.encode(), offered.encode()):
        return "the form's CSRF token is missing or does not match; reload the page and try again"
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host", ""):
        return f"a write from another site ({origin}) is refused"
    return None
