"""The app's API and pages through FastAPI's TestClient: tokens, sessions, CSRF, size limits, malformed bodies,
escaping of model text, idempotent votes, admin-only pages."""

from __future__ import annotations

import re

import pytest
from label_helpers import simple_pairs

from bridle.label import db
from bridle.label.candidates import Pair

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from bridle.label.app import SESSION_COOKIE, create_app  # noqa: E402

EVIL = ('Try this: <script>alert("xss")</script> <img src=x onerror="alert(1)"> [click](javascript:alert(2))\n\n'
        "```python\nprint('<b>not bold</b>')\n```")


@pytest.fixture
def app_db(make_db):
    pairs = [Pair("What is 2+2? <script>alert(0)</script>", EVIL, "It is **4**.", "c.jsonl", 1), *simple_pairs(3)]
    path, conn = make_db(pairs, simple_pairs(1, gold="a", start=10), k=2, gold_rate=0.0)
    tokens = {"alice": db.add_annotator(conn, "alice"), "admin": db.add_annotator(conn, "admin", admin=True)}
    return path, conn, tokens


@pytest.fixture
def client(app_db):
    with TestClient(create_app(app_db[0], max_body_bytes=4096)) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]*)"', html).group(1)


def login(client: TestClient, token: str) -> str:
    """Log in through the form; returns the session's CSRF token (from the labelling page)."""
    form = client.get("/login")
    response = client.post("/login", data={"token": token, "csrf": csrf_of(form.text)}, follow_redirects=False)
    assert response.status_code == 303
    return csrf_of(client.get("/label").text)


def form_fields(html: str) -> dict[str, str]:
    return {name: re.search(rf'name="{name}" value="([^"]*)"', html).group(1) for name in ("pair_id", "key", "csrf")}


def vote_body(pair_id: int, key: str = "key-00000001", **extra) -> dict:
    return {"pair_id": pair_id, "choice": "left", "idempotency_key": key, **extra}


# ---- tokens and sessions -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/label", "/admin"])
def test_pages_without_a_session_go_to_login(client, path):
    response = client.get(path, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login"


@pytest.mark.parametrize("method, path", [("get", "/api/next"), ("get", "/api/progress"), ("get", "/api/stats"),
                                          ("post", "/api/vote")])
def test_api_without_or_with_a_wrong_token_is_401(client, method, path):
    kwargs = {"json": vote_body(1)} if method == "post" else {}
    assert getattr(client, method)(path, **kwargs).status_code == 401
    assert getattr(client, method)(path, headers=bearer("not-a-token"), **kwargs).status_code == 401
    assert getattr(client, method)(path, headers={"Authorization": "Basic abc"}, **kwargs).status_code == 401


def test_no_generated_docs_are_served_and_only_static_files_are_open(client):
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert client.get(path).status_code == 404
    assert client.get("/static/label.js").status_code == 200
    assert client.get("/label", cookies={SESSION_COOKIE: "forged"}, follow_redirects=False).status_code == 303


def test_login_with_a_wrong_token_is_refused(client):
    form = client.get("/login")
    response = client.post("/login", data={"token": "nope", "csrf": csrf_of(form.text)})
    assert response.status_code == 401 and "not valid" in response.text
    assert SESSION_COOKIE not in client.cookies


def test_login_sets_a_strict_httponly_session_cookie(client, app_db):
    form = client.get("/login")
    response = client.post("/login", data={"token": app_db[2]["alice"], "csrf": csrf_of(form.text)},
                           follow_redirects=False)
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert client.get("/label").status_code == 200


def test_logout_ends_the_session(client, app_db):
    csrf = login(client, app_db[2]["alice"])
    assert client.post("/logout", data={"csrf": csrf}, follow_redirects=False).status_code == 303
    assert client.get("/label", follow_redirects=False).status_code == 303


# ---- CSRF and origins ----------------------------------------------------------------------------------------


def test_cookie_writes_need_the_session_csrf_token(client, app_db):
    login(client, app_db[2]["alice"])
    fields = form_fields(client.get("/label").text)
    data = {"pair_id": fields["pair_id"], "key": fields["key"], "choice": "left"}
    assert client.post("/vote", data=data).status_code == 403
    assert client.post("/vote", data={**data, "csrf": "wrong"}).status_code == 403
    assert client.post("/api/vote", json=vote_body(int(fields["pair_id"]))).status_code == 403
    assert client.post("/logout").status_code == 403
    assert db.open_db(app_db[0]).execute("SELECT COUNT(*) FROM votes").fetchone()[0] == 0
    ok = client.post("/vote", data={**data, "csrf": fields["csrf"]}, follow_redirects=False)
    assert ok.status_code == 303
    api = client.post("/api/vote", json=vote_body(int(fields["pair_id"]), key=fields["key"]),
                      headers={"X-CSRF-Token": fields["csrf"]})
    assert api.status_code == 200 and api.json()["duplicate"] is True


def test_cross_site_writes_are_refused_even_with_the_token(client, app_db):
    login(client, app_db[2]["alice"])
    fields = form_fields(client.get("/label").text)
    data = {"pair_id": fields["pair_id"], "key": fields["key"], "choice": "left", "csrf": fields["csrf"]}
    assert client.post("/vote", data=data, headers={"Origin": "http://evil.example"}).status_code == 403
    assert client.post("/vote", data=data, headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    same = client.post("/vote", data=data, headers={"Origin": "http://testserver"}, follow_redirects=False)
    assert same.status_code == 303


def test_login_form_has_its_own_csrf_token(client, app_db):
    client.get("/login")
    response = client.post("/login", data={"token": app_db[2]["alice"], "csrf": "guessed"}, follow_redirects=False)
    assert response.status_code == 403


# ---- bodies --------------------------------------------------------------------------------------------------


def test_oversized_bodies_get_413(client, app_db):
    headers = bearer(app_db[2]["alice"])
    pair = client.get("/api/next", headers=headers).json()["pair"]["pair_id"]
    big = vote_body(pair, comment="x" * 5000)
    assert client.post("/api/vote", json=big, headers=headers).status_code == 413

    def chunks():  # no Content-Length: the bytes are counted as they arrive
        yield b'{"pair_id": 1, "comment": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"}'

    chunked = client.post("/api/vote", content=chunks(), headers={**headers, "Content-Type": "application/json"})
    assert chunked.status_code == 413
    assert client.get("/api/progress", headers=headers).json()["yours"] == 0


@pytest.mark.parametrize("body", [
    b"not json", b"[]", b'{"pair_id": "one", "choice": "left", "idempotency_key": "key-00000001"}',
    b'{"pair_id": 1, "choice": "A", "idempotency_key": "key-00000001"}',
    b'{"pair_id": 1, "choice": "left", "idempotency_key": "short"}',
    b'{"pair_id": 1, "choice": "left", "idempotency_key": "bad key with spaces"}',
    b'{"pair_id": 1, "choice": "left", "idempotency_key": "key-00000001", "extra": 1}',
    b'{"pair_id": 1, "choice": "left", "idempotency_key": "key-00000001", "comment": "' + b"c" * 2001 + b'"}',
])
def test_malformed_bodies_get_422(client, app_db, body):
    headers = {**bearer(app_db[2]["alice"]), "Content-Type": "application/json"}
    client.get("/api/next", headers=headers)
    assert client.post("/api/vote", content=body, headers=headers).status_code == 422


# ---- model text ----------------------------------------------------------------------------------------------


def test_markup_in_prompts_and_responses_is_shown_not_run(client, app_db):
    login(client, app_db[2]["alice"])
    html = client.get("/label").text
    assert "What is 2+2? &lt;script&gt;alert(0)&lt;/script&gt;" in html
    assert "&lt;script&gt;alert(&quot;xss&quot;)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html
    assert "[click](javascript:alert(2))" in html and "href=\"javascript" not in html
    assert "<pre><code class=\"language-python\">print('&lt;b&gt;not bold&lt;/b&gt;')" in html
    assert "<strong>4</strong>" in html  # markdown still renders
    scripts = re.findall(r"<script[^>]*>", html)
    assert scripts == ['<script src="/static/label.js" defer>']
    csp = client.get("/label").headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp


# ---- votes ---------------------------------------------------------------------------------------------------


def test_the_same_vote_posted_twice_is_recorded_once(client, app_db):
    path, _, tokens = app_db
    headers = bearer(tokens["alice"])
    pair = client.get("/api/next", headers=headers).json()["pair"]["pair_id"]
    first = client.post("/api/vote", json=vote_body(pair, "retry-0001"), headers=headers)
    second = client.post("/api/vote", json=vote_body(pair, "retry-0001"), headers=headers)
    assert first.status_code == second.status_code == 200
    assert first.json()["vote_id"] == second.json()["vote_id"]
    assert (first.json()["duplicate"], second.json()["duplicate"]) == (False, True)
    again = client.post("/api/vote", json=vote_body(pair, "another-key"), headers=headers)
    assert again.status_code == 409 and "already voted" in again.json()["detail"]
    assert db.open_db(path).execute("SELECT COUNT(*) FROM votes").fetchone()[0] == 1


def test_a_double_submitted_form_is_one_vote(client, app_db):
    login(client, app_db[2]["alice"])
    fields = form_fields(client.get("/label").text)
    data = {**fields, "choice": "right", "comment": "  fine  ", "unsafe": "1"}
    responses = [client.post("/vote", data=data, follow_redirects=False) for _ in range(2)]
    assert [r.status_code for r in responses] == [303, 303]
    assert responses[0].headers["location"] == responses[1].headers["location"]
    rows = db.open_db(app_db[0]).execute("SELECT shown_choice, comment, unsafe FROM votes").fetchall()
    assert [tuple(r) for r in rows] == [("right", "fine", 1)]


def test_voting_on_a_pair_not_served_is_409(client, app_db):
    headers = bearer(app_db[2]["alice"])
    response = client.post("/api/vote", json=vote_body(3), headers=headers)
    assert response.status_code == 409 and "not served" in response.json()["detail"]


def test_progress_moves_after_a_vote(client, app_db):
    headers = bearer(app_db[2]["alice"])
    before = client.get("/api/next", headers=headers).json()
    after = client.post("/api/vote", json=vote_body(before["pair"]["pair_id"]), headers=headers).json()["progress"]
    assert (before["progress"]["yours"], after["yours"]) == (0, 1)
    assert after["votes"] == before["progress"]["votes"] + 1


def test_the_api_walks_through_every_pair_then_says_done(client, app_db):
    headers = bearer(app_db[2]["alice"])
    seen = []
    while (pair := client.get("/api/next", headers=headers).json()["pair"]) is not None:
        seen.append(pair["pair_id"])
        assert client.post("/api/vote", json=vote_body(pair["pair_id"], f"walk-{pair['pair_id']:04d}"),
                           headers=headers).status_code == 200
    assert sorted(seen) == [1, 2, 3, 4]  # gold rate 0: the gold pair is not served


# ---- admin ---------------------------------------------------------------------------------------------------


def test_admin_pages_are_for_admins_only(client, app_db):
    tokens = app_db[2]
    assert client.get("/api/stats", headers=bearer(tokens["alice"])).status_code == 403
    stats = client.get("/api/stats", headers=bearer(tokens["admin"])).json()
    assert stats["pairs"] == 4 and stats["gold_pairs"] == 1
    assert {a["name"] for a in stats["annotators"]} == {"alice", "admin"}
    login(client, tokens["alice"])
    assert client.get("/admin").status_code == 403
    client.cookies.clear()
    form = client.get("/login")
    client.post("/login", data={"token": tokens["admin"], "csrf": csrf_of(form.text)})
    page = client.get("/admin")
    assert page.status_code == 200 and "alice" in page.text
    text = re.sub(r"<[^>]+>|\s+", " ", page.text)
    assert "Fleiss' κ over the 0 pairs with exactly 2 votes" in text and "built-in" not in text
