"""The labelling web app (FastAPI): pages for annotators and the admin, and a JSON API for scripts.

Who may do what:
- Every page and API call needs a valid annotator token: as `Authorization: Bearer TOKEN` (scripts), or once on the
  login form, which starts a server-side session (an HttpOnly, SameSite=Strict cookie). Only /login and the static
  CSS/JS are open.
- Every write made with a session cookie carries the session's CSRF token (form field `csrf` or header
  `X-CSRF-Token`) and must come from this origin; the login form has its own double-submit token. A bearer token is
  not ambient (a browser never adds it by itself), so bearer requests need no CSRF token.
- The admin page and /api/stats need an admin annotator.
- Bodies over `max_body_bytes` get 413, malformed ones 422; every response carries a strict CSP.
"""

# No `from __future__ import annotations` here: FastAPI reads the route signatures at runtime, and their
# dependencies are closures of create_app.
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader
from pydantic import BaseModel, ConfigDict, Field

from bridle.label import db as store
from bridle.label.assign import Progress, Rules, Shown, VoteRejected, next_pair, progress, record_vote
from bridle.label.render import response_turns, turns
from bridle.label.security import BodyLimit, SecurityHeaders, same_origin, tokens_match
from bridle.label.stats import MIN_SHARED, labelling_stats

HERE = Path(__file__).resolve().parent
SESSION_COOKIE, LOGIN_COOKIE = "bridle_session", "bridle_login_csrf"
KEY_PATTERN = r"^[A-Za-z0-9_-]{8,128}$"
MAX_COMMENT = 2000


@dataclass(frozen=True)
class Caller:
    annotator: store.Annotator
    csrf: str | None  # the session's CSRF token; None for bearer-token requests


class VoteIn(BaseModel):
    """A vote as the API takes it: `choice` is the side as shown (left = "A", right = "B")."""

    model_config = ConfigDict(extra="forbid")
    pair_id: int
    choice: Literal["left", "right", "tie", "both_bad"]
    idempotency_key: str = Field(pattern=KEY_PATTERN)
    comment: str = Field("", max_length=MAX_COMMENT)
    unsafe: bool = False


class LoginRedirect(Exception):
    """A page was asked for without a valid session: send the browser to the login form."""


class Connections:
    """One SQLite connection per server thread (sqlite3 connections are not shared between threads)."""

    def __init__(self, path: str | Path) -> None:
        self.path, self._local = Path(path), threading.local()

    def get(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = store.open_db(self.path)
        return conn


def create_app(db_path: str | Path, *, max_body_bytes: int = 64 * 1024) -> FastAPI:
    """The app over an existing labelling database (`bridle.label.db.init_db`)."""
    connections = Connections(db_path)
    rules = Rules.from_settings(store.settings(connections.get()))
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, title="bridle label")
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True)
    templates = Jinja2Templates(env=env)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(SecurityHeaders)

    def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        return templates.TemplateResponse(request, name, context, status_code=status)

    @app.exception_handler(LoginRedirect)
    async def to_login(request: Request, exc: LoginRedirect) -> Response:
        return RedirectResponse("/login", status_code=303)

    # ---- who is asking ---------------------------------------------------------------------------------------

    def caller_of(request: Request) -> Caller | None:
        conn = connections.get()
        header = request.headers.get("authorization", "")
        if header:
            scheme, _, token = header.partition(" ")
            annotator = store.annotator_by_token(conn, token.strip()) if scheme.lower() == "bearer" else None
            if annotator is None:
                raise HTTPException(401, "The token is not valid.", headers={"WWW-Authenticate": "Bearer"})
            return Caller(annotator, None)
        session_id = request.cookies.get(SESSION_COOKIE)
        session = store.session_by_id(conn, session_id) if session_id else None
        return Caller(session.annotator, session.csrf) if session else None

    def api_caller(request: Request) -> Caller:
        caller = caller_of(request)
        if caller is None:
            raise HTTPException(401, "Send Authorization: Bearer TOKEN (from `bridle label add-annotator`).",
                                headers={"WWW-Authenticate": "Bearer"})
        return caller

    def page_caller(request: Request) -> Caller:
        caller = caller_of(request)
        if caller is None:
            raise LoginRedirect()
        return caller

    async def check_write(request: Request, caller: Caller) -> None:
        """Same origin, and with a session cookie the session's CSRF token."""
        if not same_origin(request):
            raise HTTPException(403, "Cross-site request refused.")
        if caller.csrf is None:
            return
        given = request.headers.get("x-csrf-token")
        if given is None and request.headers.get("content-type", "").startswith(
                ("application/x-www-form-urlencoded", "multipart/form-data")):
            given = (await request.form()).get("csrf")
        if not tokens_match(given, caller.csrf):
            raise HTTPException(403, "Missing or wrong CSRF token; reload the page.")

    async def api_writer(request: Request, caller: Annotated[Caller, Depends(api_caller)]) -> Caller:
        await check_write(request, caller)
        return caller

    async def page_writer(request: Request, caller: Annotated[Caller, Depends(page_caller)]) -> Caller:
        await check_write(request, caller)
        return caller

    def admin_only(caller: Caller) -> None:
        if not caller.annotator.admin:
            raise HTTPException(403, "Admins only (bridle label add-annotator NAME --admin).")

    # ---- login -----------------------------------------------------------------------------------------------

    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request) -> HTMLResponse:
        token = secrets.token_urlsafe(32)
        response = page(request, "login.html", csrf=token, error=None)
        response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", max_age=3600)
        return response

    @app.post("/login", response_class=HTMLResponse)
    def login(request: Request, token: Annotated[str, Form(max_length=200)],
              csrf: Annotated[str, Form(max_length=200)]) -> Response:
        if not same_origin(request) or not tokens_match(csrf, request.cookies.get(LOGIN_COOKIE, "")):
            raise HTTPException(403, "The login form expired or came from another site; reload it.")
        conn = connections.get()
        annotator = store.annotator_by_token(conn, token.strip())
        if annotator is None:
            return page(request, "login.html", 401, csrf=csrf, error="That token is not valid.")
        session_id, _ = store.create_session(conn, annotator)
        response = RedirectResponse("/admin" if annotator.admin else "/label", status_code=303)
        response.set_cookie(SESSION_COOKIE, session_id, httponly=True, samesite="strict",
                            max_age=store.SESSION_SECONDS)
        response.delete_cookie(LOGIN_COOKIE)
        return response

    @app.post("/logout")
    def logout(request: Request, caller: Annotated[Caller, Depends(page_writer)]) -> Response:
        store.end_session(connections.get(), request.cookies.get(SESSION_COOKIE, ""))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    # ---- pages -----------------------------------------------------------------------------------------------

    @app.get("/")
    def home(caller: Annotated[Caller, Depends(page_caller)]) -> Response:
        return RedirectResponse("/label", status_code=303)

    @app.get("/label", response_class=HTMLResponse)
    def label_page(request: Request, caller: Annotated[Caller, Depends(page_caller)],
                   saved: int | None = None) -> HTMLResponse:
        conn = connections.get()
        shown = next_pair(conn, caller.annotator.id, rules)
        return page(request, "label.html", **_context(caller, progress(conn, caller.annotator.id, rules)),
                    pair=_view(shown), key=secrets.token_urlsafe(16), saved=saved)

    @app.post("/vote")
    def vote_form(request: Request, caller: Annotated[Caller, Depends(page_writer)],
                  pair_id: Annotated[int, Form()], choice: Annotated[str, Form(max_length=16)],
                  key: Annotated[str, Form(pattern=KEY_PATTERN)],
                  comment: Annotated[str, Form(max_length=MAX_COMMENT)] = "",
                  unsafe: Annotated[str, Form(max_length=8)] = "") -> Response:
        conn = connections.get()
        try:
            result = record_vote(conn, caller.annotator.id, pair_id, choice, key, comment=comment.strip(),
                                 unsafe=bool(unsafe))
        except VoteRejected as e:
            return page(request, "error.html", e.status, **_context(caller, progress(conn, caller.annotator.id,
                                                                                     rules)), message=str(e))
        return RedirectResponse(f"/label?saved={result.vote_id}", status_code=303)

    @app.get("/admin", response_class=HTMLResponse)
    def admin_page(request: Request, caller: Annotated[Caller, Depends(page_caller)]) -> HTMLResponse:
        admin_only(caller)
        conn = connections.get()
        return page(request, "admin.html", **_context(caller, progress(conn, caller.annotator.id, rules)),
                    stats=labelling_stats(conn, rules), min_shared=MIN_SHARED)

    # ---- API -------------------------------------------------------------------------------------------------

    @app.get("/api/next")
    def api_next(caller: Annotated[Caller, Depends(api_caller)]) -> dict[str, Any]:
        conn = connections.get()
        shown = next_pair(conn, caller.annotator.id, rules)
        pair = None if shown is None else {"pair_id": shown.pair_id, "prompt": shown.prompt, "left": shown.left,
                                           "right": shown.right}
        return {"pair": pair, "progress": _progress(progress(conn, caller.annotator.id, rules))}

    @app.post("/api/vote")
    def api_vote(body: VoteIn, caller: Annotated[Caller, Depends(api_writer)]) -> JSONResponse:
        conn = connections.get()
        try:
            result = record_vote(conn, caller.annotator.id, body.pair_id, body.choice, body.idempotency_key,
                                 comment=body.comment.strip(), unsafe=body.unsafe)
        except VoteRejected as e:
            return JSONResponse({"detail": str(e)}, e.status)
        return JSONResponse({"vote_id": result.vote_id, "duplicate": result.duplicate,
                             "progress": _progress(progress(conn, caller.annotator.id, rules))})

    @app.get("/api/progress")
    def api_progress(caller: Annotated[Caller, Depends(api_caller)]) -> dict[str, Any]:
        return _progress(progress(connections.get(), caller.annotator.id, rules))

    @app.get("/api/stats")
    def api_stats(caller: Annotated[Caller, Depends(api_caller)]) -> dict[str, Any]:
        admin_only(caller)
        return labelling_stats(connections.get(), rules)

    return app


def _context(caller: Caller, done: Progress) -> dict[str, Any]:
    return {"me": caller.annotator, "csrf": caller.csrf or "", "progress": done}


def _progress(p: Progress) -> dict[str, Any]:
    return {"yours": p.yours, "open_for_you": p.open_for_you, "pairs": p.pairs, "complete": p.complete,
            "votes": p.votes, "needed": p.needed, "percent": round(p.percent, 1)}


def _view(shown: Shown | None) -> dict[str, Any] | None:
    if shown is None:
        return None
    return {"id": shown.pair_id, "prompt": turns(shown.prompt), "left": response_turns(shown.left),
            "right": response_turns(shown.right)}
