"""Sign-in state, roles and CSRF: signed session cookies, one token per session.

The session cookie (Starlette's SessionMiddleware, signed with itsdangerous) holds the
user's name and role and a CSRF token. Every POST must echo that token, in the
`X-CSRF-Token` header (htmx sends it from <body hx-headers>) or a `csrf` form field;
`csrf_protected` wraps every POST handler and the tests check that none is left out.
"""

from __future__ import annotations

import functools
import hmac
import logging
import os
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.authentication import AuthCredentials, AuthenticationBackend, SimpleUser
from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse, Response

from edge.ui.users import SCOPES

log = logging.getLogger(__name__)
CSRF_HEADER = "X-CSRF-Token"


def session_secret(path: Path) -> str:
    """The key that signs cookies: read, or created (0600) on first start, so sessions survive restarts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32))
    log.info("created the session secret %s", path)
    return path.read_text().strip()


class SessionUsers(AuthenticationBackend):
    """request.user and request.auth.scopes from the signed session (no database round trip)."""

    async def authenticate(self, conn: HTTPConnection):
        user = conn.session.get("user")
        role = conn.session.get("role")
        if not user or role not in SCOPES:
            return None
        return AuthCredentials(SCOPES[role]), SimpleUser(user)


def sign_in(request: Request, name: str, role: str) -> None:
    request.session.clear()  # a fresh token too: nothing from before the sign-in survives it
    request.session.update(user=name, role=role, csrf=secrets.token_urlsafe(32))


def csrf_token(request: Request) -> str:
    """This session's token, made on first use (the sign-in form needs one before anyone signs in)."""
    if "csrf" not in request.session:
        request.session["csrf"] = secrets.token_urlsafe(32)
    return request.session["csrf"]


async def csrf_ok(request: Request) -> bool:
    expected = request.session.get("csrf")
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        sent = (await request.form()).get("csrf")
    return bool(expected and sent and hmac.compare_digest(str(sent), expected))


Handler = Callable[[Request], Awaitable[Response]]


def csrf_protected(handler: Handler) -> Handler:
    """Refuse (403) a POST that does not carry the session's CSRF token."""

    @functools.wraps(handler)
    async def wrapper(request: Request) -> Response:
        if not await csrf_ok(request):
            log.warning("%s %s refused: missing or wrong CSRF token", request.method, request.url.path)
            return PlainTextResponse("CSRF token missing or wrong; reload the page", status_code=403)
        return await handler(request)

    wrapper.csrf_protected = True  # type: ignore[attr-defined]
    return wrapper
