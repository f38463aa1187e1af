"""The walls in front of the app: body limits (declared and counted), same-origin checks, security headers."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("starlette")
from starlette.requests import Request  # noqa: E402

from bridle.label.security import BodyLimit, SecurityHeaders, same_origin, tokens_match  # noqa: E402


def call(middleware_of, headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> tuple[int, bool, dict]:
    """Run one request through a middleware around an app that reads the whole body; returns (status, whether the
    app ran, response headers)."""
    ran = []

    async def app(scope, receive, send):
        ran.append(True)
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    sent = []

    async def receive():
        return messages.pop(0)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers, "query_string": b""}
    try:
        asyncio.run(middleware_of(app)(scope, receive, send))
    except Exception as e:  # the counted limit raises HTTPException(413) for the app's exception handler
        return getattr(e, "status_code", 500), bool(ran), {}
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], bool(ran), dict(start["headers"])


def test_a_declared_oversize_body_is_refused_before_the_app_runs():
    status, ran, _ = call(lambda app: BodyLimit(app, 100), [(b"content-length", b"101")], [b"x" * 101])
    assert (status, ran) == (413, False)
    assert call(lambda app: BodyLimit(app, 100), [(b"content-length", b"100")], [b"x" * 100])[:2] == (200, True)


def test_a_body_without_length_is_counted_as_it_arrives():
    status, ran, _ = call(lambda app: BodyLimit(app, 100), [], [b"x" * 60, b"x" * 60])
    assert (status, ran) == (413, True)


def test_a_malformed_content_length_is_400():
    assert call(lambda app: BodyLimit(app, 100), [(b"content-length", b"12abc")], [b""])[:2] == (400, False)


def test_every_response_carries_the_security_headers():
    _, _, headers = call(SecurityHeaders, [], [b""])
    assert headers[b"content-security-policy"].startswith(b"default-src 'none'")
    assert headers[b"x-content-type-options"] == b"nosniff" and headers[b"x-frame-options"] == b"DENY"


@pytest.mark.parametrize("headers, ok", [
    ({}, True), ({"origin": "http://127.0.0.1:8765"}, True), ({"sec-fetch-site": "same-origin"}, True),
    ({"origin": "http://evil.example"}, False), ({"origin": "null"}, False), ({"sec-fetch-site": "cross-site"}, False),
    ({"sec-fetch-site": "same-site"}, False),
])
def test_same_origin(headers, ok):
    raw = [(b"host", b"127.0.0.1:8765"), *((k.encode(), v.encode()) for k, v in headers.items())]
    request = Request({"type": "http", "method": "POST", "scheme": "http", "server": ("127.0.0.1", 8765),
                       "path": "/", "headers": raw, "query_string": b""})
    assert same_origin(request) is ok


def test_tokens_match():
    assert tokens_match("abc", "abc") and not tokens_match("abd", "abc")
    assert not tokens_match("", "") and not tokens_match(None, "abc")
