"""``/login`` (a form that takes a hub token) and ``/logout``; see :mod:`..session`.

Wrong tokens back off (:class:`~apitally_hub.security.attempts.FailureLimit`: 429 with
``Retry-After`` after a few failures a minute from one address, or from all together) and are
logged at most once a minute (:class:`~apitally_hub.log_throttle.LogThrottle`)."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from apitally_hub.log_throttle import LogThrottle
from apitally_hub.web.dashboard.session import SESSION_COOKIE, SESSION_SECONDS
from apitally_hub.web.dashboard.site import LOGIN_PATH, Dashboard, url

_logger = logging.getLogger(__name__)
_log = LogThrottle(_logger)


def _local_target(value: str | None) -> str:
    """Where to go after the login: a path on this hub only (no open redirect)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value or len(value) > 4096:
        return "/"
    return value


async def login_form(dash: Dashboard, request: Request) -> Response:
    sessions = await dash.sessions()
    target = _local_target(request.query_params.get("next"))
    if not sessions.required or request.state.access.session is not None:
        return RedirectResponse(target, status_code=303)
    return await dash.render(request, "login.html", next=target, error=None)


async def login(dash: Dashboard, request: Request) -> Response:
    sessions = await dash.sessions()
    form = request.state.form
    target = _local_target(form.get("next"))
    if not sessions.required:
        return RedirectResponse(target, status_code=303)
    client = request.client.host if request.client else "?"
    limit = dash.login_failures
    wait = limit.retry_after(client)
    if wait is not None:
        _log.warning(
            "login-backoff", "Dashboard login refused for %s s (too many wrong tokens) to %s", wait, client
        )
        return PlainTextResponse(
            "Too many wrong tokens: try again later", status_code=429, headers={"Retry-After": str(wait)}
        )
    index = sessions.token_index(form.get("token", "").strip())
    if index is None:
        limit.failed(client)
        _log.warning("login", "Dashboard login with a wrong token from %s", client)
        return await dash.render(
            request, "login.html", status_code=401, next=target, error="That is not a token of this hub."
        )
    limit.succeeded(client)
    cookie, _ = sessions.issue(index)
    response = RedirectResponse(target, status_code=303)
    dash.set_cookie(request, response, SESSION_COOKIE, cookie, max_age=SESSION_SECONDS)
    return response


async def logout(dash: Dashboard, request: Request) -> Response:
    sessions = await dash.sessions()
    session = request.state.access.session
    if session is not None:
        store = dash.context.store
        await dash.context.run(lambda: sessions.revoke(session, store))
    response = RedirectResponse(url(request, "login"), status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


def routes(dash: Dashboard) -> list[Route]:
    return [
        dash.page(LOGIN_PATH, login_form, name="login"),
        dash.page(LOGIN_PATH, login, name="login_post", methods=("POST",)),
        dash.page("/logout", logout, name="logout", methods=("POST",)),
    ]
