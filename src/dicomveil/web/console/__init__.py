"""The operator console at ``/console/``: sessions, server-rendered pages, no script.

``install_console(app, services)`` adds the pages, their static files, the session store and
the handlers that turn "no session" into the login page and "wrong role" into a 403 page.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from dicomveil.web.console.auth import CONSOLE_LOGIN, ConsoleAuth, LoginRequired, PageForbidden
from dicomveil.web.console.sessions import SESSIONS_FILE, SessionStore
from dicomveil.web.services import Services

__all__ = ["install_console"]


def install_console(app: FastAPI, services: Services) -> None:
    """Serve the console of ``services`` on ``app``."""
    from dicomveil.web.console import pages, routes_page

    settings = services.settings
    sessions = SessionStore(settings.home / SESSIONS_FILE, settings.console_session_seconds)
    app.state.console_auth = ConsoleAuth(
        sessions, services.tokens, services.audit, secure=settings.console_secure_cookie
    )
    app.include_router(pages.router)
    app.include_router(routes_page.router)
    static = StaticFiles(directory=Path(__file__).with_name("static"))
    app.mount("/console/static", static, name="console-static")

    async def on_login_required(request: Request, exc: Exception) -> Response:
        if request.method in ("GET", "HEAD"):
            return RedirectResponse(CONSOLE_LOGIN, status_code=303)
        return pages.render(request, "login.html", None, {"error": "please log in"}, 401)

    async def on_forbidden(request: Request, exc: Exception) -> HTMLResponse:
        assert isinstance(exc, PageForbidden)
        visitor = app.state.console_auth.visitor(request)
        return pages.render(request, "error.html", visitor, {"message": exc.message}, 403)

    app.add_exception_handler(LoginRequired, on_login_required)
    app.add_exception_handler(PageForbidden, on_forbidden)
