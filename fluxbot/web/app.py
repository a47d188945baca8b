"""The studio's ASGI app: login, logout, downloads and the Gradio Blocks mounted at the root.

Login, sessions and CSRF are ordinary FastAPI code here; Gradio asks `identify` who is calling
(its `auth_dependency`), and every studio handler asks again through the same function.
"""

from __future__ import annotations

import html
import logging
import secrets
import shutil
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import urlsplit

import gradio as gr
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.background import BackgroundTask
from starlette.routing import Mount

from fluxbot.web.access import Access, Identity, is_local_mode, local_owner_id
from fluxbot.web.actions import Studio
from fluxbot.web.errors import UserError, message_for
from fluxbot.web.oauth import DiscordOAuth, OAuthFailed
from fluxbot.web.sessions import LOGIN_COOKIE, LOGIN_MAX_AGE_S, SESSION_COOKIE, SessionCodec
from fluxbot.web.ui import CSS, build_blocks, studio_theme
from fluxbot.web.urls import PublicUrl

log = logging.getLogger(__name__)

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]


class StudioAuth:
    """Who is calling: the owner in local mode, else the user of a valid session cookie."""

    def __init__(self, access: Access, codec: SessionCodec, local: bool) -> None:
        self.access = access
        self.codec = codec
        self.local = local

    def identify(self, cookies: MutableMapping[str, str] | Any) -> Identity | None:
        if self.local:
            owner = local_owner_id(self.access.settings)
            return self.access.identity(owner, "owner")
        session = self.codec.read(cookies.get(SESSION_COOKIE))
        if session is None:
            return None
        return self.access.identity(session.user_id, session.name)

    def gradio_user(self, request: Request) -> str | None:
        identity = self.identify(request.cookies)
        return None if identity is None else str(identity.user_id)


class StudioGate:
    """In front of everything: CSRF defence for every state-changing request (Gradio's API
    included: a browser's Origin or Referer must be the studio's own; cookies are SameSite=Lax
    besides), and the login page for a browser that opens the studio without a session."""

    def __init__(self, app: ASGIApp, auth: StudioAuth, url: PublicUrl) -> None:
        self.app = app
        self.auth = auth
        self.url = url

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            refusal = self._refusal(scope)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> Response | None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        method = scope["method"]
        if method in UNSAFE_METHODS:
            origin = headers.get("origin") or _origin_of(headers.get("referer"))
            own = {f"{scope.get('scheme', 'http')}://{headers.get('host', '')}", self.url.origin}
            if origin and (origin == "null" or origin not in own):
                log.info("refused a cross-site %s to %s from %s", method, scope["path"], origin)
                return Response("Cross-site request refused.", status_code=403)
        if method == "GET" and scope["path"] in ("", "/") and not self.auth.local:
            cookies = _cookies(headers.get("cookie", ""))
            if self.auth.identify(cookies) is None:
                return RedirectResponse(self.url.at("/login"), status_code=303)
        return None


def _cookies(header: str) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:
        return {}
    return {name: morsel.value for name, morsel in jar.items()}


def _origin_of(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:34em;margin:4em auto;text-align:center}"
        "a.button{display:inline-block;padding:.7em 1.4em;background:#5865f2;color:#fff;"
        "border-radius:6px;text-decoration:none}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>",
        status_code=status,
    )


@dataclass(frozen=True, slots=True)
class StudioApp:
    """The ASGI app to serve, and the Blocks inside it (to close their streams at shutdown)."""

    asgi: ASGIApp
    blocks: gr.Blocks
    gradio_app: Any  # gradio.routes.App, which ends its heartbeat streams on `stop_event`

    def close(self) -> None:
        """End Gradio's queue and long-lived streams, so the server can stop promptly."""
        self.blocks._queue.close()
        stop_event = getattr(self.gradio_app, "stop_event", None)
        if stop_event is not None:
            stop_event.set()


def create_app(studio: Studio, codec: SessionCodec, url: PublicUrl) -> StudioApp:
    """The studio's FastAPI app, with the Gradio Blocks mounted at its root."""
    settings = studio.settings
    local = is_local_mode(settings)
    auth = StudioAuth(studio.access, codec, local)
    oauth = None if local else DiscordOAuth(settings, url.redirect_uri)
    max_age = int(codec.max_age_s)

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    def set_cookie(response: Response, name: str, value: str, age: int) -> None:
        response.set_cookie(
            name,
            value,
            max_age=age,
            httponly=True,
            samesite="lax",
            secure=url.secure,
            path=url.path or "/",
        )

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/login")
    async def login(request: Request) -> Response:
        if local or auth.identify(request.cookies) is not None:
            return RedirectResponse(url.at("/"), status_code=303)
        return _page(
            "fluxbot studio",
            f"<p><a class='button' href='{url.at('/auth/discord')}'>Log in with Discord</a></p>"
            "<p>Your images and history are the same as in the Discord bot.</p>",
        )

    @app.get("/auth/discord")
    async def start_login() -> Response:
        if oauth is None:
            return RedirectResponse(url.at("/"), status_code=303)
        state = secrets.token_urlsafe(24)
        response = RedirectResponse(oauth.authorize_url(state), status_code=303)
        set_cookie(response, LOGIN_COOKIE, codec.issue_login(state), LOGIN_MAX_AGE_S)
        return response

    @app.get("/auth/callback")
    async def callback(request: Request, code: str = "", state: str = "") -> Response:
        if oauth is None:
            return RedirectResponse(url.at("/"), status_code=303)
        expected = codec.login_state(request.cookies.get(LOGIN_COOKIE))
        if not expected or not state or not secrets.compare_digest(expected, state):
            log.info("OAuth callback with a missing or wrong state refused")
            return _page(
                "Login refused",
                "<p>This login link is not the one we started (or it is too old).</p>"
                f"<p><a href='{url.at('/login')}'>Try again</a></p>",
                status=400,
            )
        if not code:
            return _page("Login cancelled", f"<p><a href='{url.at('/login')}'>Try again</a></p>")
        try:
            user = await oauth.user_for_code(code)
        except OAuthFailed as exc:
            return _page("Login failed", f"<p>{html.escape(str(exc))}</p>", status=502)
        response = RedirectResponse(url.at("/"), status_code=303)
        set_cookie(response, SESSION_COOKIE, codec.issue(user.id, user.name), max_age)
        response.delete_cookie(LOGIN_COOKIE, path=url.path or "/")
        log.info("web login: user %s", user.id)
        return response

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        session = codec.read(request.cookies.get(SESSION_COOKIE))
        form = await request.form()
        token = form.get("csrf")
        if session is not None and not codec.check_csrf(session, str(token or "")):
            return _page("Logout refused", "<p>The form's token is missing or wrong.</p>", 403)
        response = RedirectResponse(url.at("/login"), status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=url.path or "/")
        return response

    def caller(request: Request) -> Identity:
        identity = auth.identify(request.cookies)
        if identity is None:
            raise _NotSignedIn()
        return identity

    @app.get("/download/{public_id}/{index}")
    async def download(request: Request, public_id: str, index: int) -> Response:
        try:
            path = await studio.image_file(caller(request), public_id, index)
        except _NotSignedIn:
            return Response("Log in first.", status_code=401)
        except UserError as exc:
            return Response(message_for(exc), status_code=404)
        return FileResponse(path, filename=f"{public_id}-{index + 1}{path.suffix}")

    @app.get("/export.zip")
    async def export(request: Request) -> Response:
        try:
            report = await studio.export(caller(request))
        except _NotSignedIn:
            return Response("Log in first.", status_code=401)
        folder = report.path.parent
        return FileResponse(
            report.path,
            filename="fluxbot-export.zip",
            media_type="application/zip",
            background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
        )

    def header(request: gr.Request, identity: Identity) -> str:
        role = "owner" if identity.is_admin else "member"
        if local:
            who = "Local mode: you are the owner"
        else:
            session = codec.read(request.cookies.get(SESSION_COOKIE))
            token = codec.csrf_token(session) if session else ""
            who = (
                f"{html.escape(identity.name)} · {role}"
                f"<form method='post' action='{url.at('/logout')}'>"
                f"<input type='hidden' name='csrf' value='{token}'>"
                "<button type='submit' id='logout'>Log out</button></form>"
            )
        return f"<div class='flux-head'><b>fluxbot studio</b><span>{who}</span></div>"

    def resolve(request: gr.Request) -> Identity | None:
        return auth.identify(request.cookies)

    blocks = build_blocks(studio, resolve, header)
    app = gr.mount_gradio_app(
        app,
        blocks,
        path="/",
        auth_dependency=auth.gradio_user,
        root_path=url.path or None,
        css=CSS,
        theme=studio_theme(),
        footer_links=[],
        show_error=True,
    )
    mounted = [r.app for r in app.routes if isinstance(r, Mount) and hasattr(r.app, "stop_event")]
    return StudioApp(StudioGate(app, auth, url), blocks, mounted[0] if mounted else None)


class _NotSignedIn(Exception):
    pass
