"""EndpointClient against a scripted stub of an OpenAI-compatible server on 127.0.0.1 (http.server in a thread).

Every stub answers only the requests a test sends and stops at teardown; backoffs are milliseconds, so the whole
file runs in a few seconds."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bridle.errors import BridleError, ConfigError
from bridle.feedback.endpoint import (
    MALFORMED_RETRIES,
    ChatRequest,
    Completion,
    EndpointClient,
    EndpointError,
    chat_completions_url,
    request_key,
)
from endpoint_stub import ENDPOINT_VARS, PROXY_VARS, Reply, StubServer, echo


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARS + ENDPOINT_VARS:  # loopback only: never through a proxy, never a real endpoint
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def serve() -> Iterator[Callable[..., StubServer]]:
    servers: list[StubServer] = []

    def start(script: Callable[[int, dict[str, Any]], Reply] | None = None) -> StubServer:
        servers.append(StubServer(script))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def client_for(server: StubServer | str, notes: list[str] | None = None, **kwargs: Any) -> EndpointClient:
    """A client with millisecond backoffs, so retries cost no time."""
    settings = {"model": "judge", "backoff": 0.001, "max_backoff": 0.01, "timeout": 5.0, **kwargs}
    url = server.url if isinstance(server, StubServer) else server
    return EndpointClient(url, log=(notes.append if notes is not None else None), **settings)


def messages(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


# ---- the happy path --------------------------------------------------------------------------------------------

def test_complete_sends_the_openai_body_and_parses_the_answer(serve):
    server = serve()
    client = client_for(server, api_key="sk-test")
    answer = client.complete(messages("hi"), max_tokens=7, seed=3)
    assert answer == Completion(text="echo: hi", finish_reason="stop", top_logprobs=None,
                                usage={"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}, cached=False)
    assert server.bodies == [{"model": "judge", "messages": messages("hi"), "temperature": 0.0, "max_tokens": 7,
                              "seed": 3}]
    assert server.headers[0]["Authorization"] == "Bearer sk-test"
    assert client.stats.misses == 1 and client.stats.requests == 1 and client.stats.hits == 0
    assert "sk-test" not in repr(client)


def test_top_logprobs_of_the_first_token_are_returned(serve):
    logprobs = {"content": [{"token": "yes", "logprob": -0.1, "top_logprobs": [{"token": "yes", "logprob": -0.1},
                                                                               {"token": "no", "logprob": -2.3}]},
                            {"token": "!", "logprob": -0.5, "top_logprobs": [{"token": "!", "logprob": -0.5}]}]}
    server = serve(lambda n, body: Reply(body=echo(body, logprobs=logprobs)))
    answer = client_for(server).complete(messages("ok?"), max_tokens=1, top_logprobs=2)
    assert answer.top_logprobs == {"yes": -0.1, "no": -2.3}
    assert server.bodies[0]["logprobs"] is True and server.bodies[0]["top_logprobs"] == 2


def test_a_string_is_one_user_message_extras_reach_the_body_and_reserved_keys_are_refused(serve):
    server = serve()
    client = client_for(server)
    assert client.complete("plain").text == "echo: plain"
    assert server.bodies[0]["messages"] == messages("plain")
    client.complete("newer model", max_tokens=None, max_completion_tokens=9)
    assert "max_tokens" not in server.bodies[1] and server.bodies[1]["max_completion_tokens"] == 9
    with pytest.raises(ConfigError, match="model"):
        client.complete("x", model="other")
    with pytest.raises(ConfigError, match="stream"):
        client.complete("x", stream=True)


def test_chat_completions_url_accepts_the_api_root_in_its_usual_forms():
    assert chat_completions_url("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1/chat/completions"
    assert chat_completions_url("http://127.0.0.1:8000/v1/") == "http://127.0.0.1:8000/v1/chat/completions"
    assert chat_completions_url("http://127.0.0.1:8000") == "http://127.0.0.1:8000/v1/chat/completions"
    assert chat_completions_url("https://h/openai/v1/chat/completions") == "https://h/openai/v1/chat/completions"
    with pytest.raises(ConfigError, match="not an http"):
        chat_completions_url("127.0.0.1:8000")


# ---- retries -----------------------------------------------------------------------------------------------------

def test_a_timeout_is_retried_then_succeeds(serve):
    server = serve(lambda n, body: Reply(sleep=1.0 if n == 0 else 0.0))
    client = client_for(server, timeout=0.2)
    assert client.complete(messages("slow")).text == "echo: slow"
    assert server.count == 2 and client.stats.retries == 1


def test_timeouts_until_the_retries_run_out_say_timed_out(serve):
    server = serve(lambda n, body: Reply(sleep=0.6))
    with pytest.raises(EndpointError, match="timed out") as caught:
        client_for(server, timeout=0.15, max_retries=1).complete(messages("slow"))
    assert caught.value.attempts == 2 and server.url in str(caught.value)


def test_429_with_retry_after_waits_that_long_then_succeeds(serve):
    server = serve(lambda n, body: Reply(429, {"error": {"message": "slow down"}}, {"Retry-After": "1"})
                   if n == 0 else Reply())
    start = time.monotonic()
    answer = client_for(server, max_backoff=5.0).complete(messages("a"))
    elapsed = time.monotonic() - start
    assert answer.text == "echo: a" and server.count == 2
    assert elapsed >= 0.9  # the jittered backoff alone would be ≤ 1 ms


def test_retry_after_is_capped_by_max_backoff(serve):
    server = serve(lambda n, body: Reply(429, {"error": {"message": "slow"}}, {"Retry-After": "100"})
                   if n == 0 else Reply())
    start = time.monotonic()
    client_for(server, max_backoff=0.05).complete(messages("a"))
    assert time.monotonic() - start < 5


def test_500s_until_the_retries_run_out_raise_naming_the_endpoint_and_attempts(serve):
    server = serve(lambda n, body: Reply(500, {"error": {"message": "model crashed"}}))
    client = client_for(server, max_retries=3)
    with pytest.raises(EndpointError) as caught:
        client.complete(messages("a"))
    error = caught.value
    assert isinstance(error, BridleError)
    assert server.count == 4 and error.attempts == 4 and error.status == 500
    text = str(error)
    assert f"{server.url}/chat/completions" in text and "4 attempts" in text
    assert "HTTP 500" in text and "model crashed" in text


def test_a_refused_connection_is_retried_then_raises(serve):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = client_for(f"http://127.0.0.1:{port}/v1", max_retries=2)
    with pytest.raises(EndpointError, match=r"after 3 attempts.*(Refused|refused)") as caught:
        client.complete(messages("a"))
    assert f"127.0.0.1:{port}" in str(caught.value) and client.stats.requests == 3


def test_a_400_is_not_retried_and_says_why(serve):
    server = serve(lambda n, body: Reply(400, {"error": {"message": "model 'judge' does not exist"}}))
    with pytest.raises(EndpointError) as caught:
        client_for(server).complete(messages("a"))
    assert server.count == 1 and caught.value.status == 400 and caught.value.attempts == 1
    text = str(caught.value)
    assert "HTTP 400" in text and "model 'judge' does not exist" in text and server.url in text


def test_malformed_json_is_retried_a_bounded_number_of_times_then_raises(serve):
    server = serve(lambda n, body: Reply(body=b"<html>a login page</html>"))
    with pytest.raises(EndpointError, match="not a chat completion") as caught:
        client_for(server, max_retries=5).complete(messages("a"))
    assert server.count == MALFORMED_RETRIES + 1 < 6  # fewer than max_retries allows: garbage is not a hiccup
    assert server.url in str(caught.value) and "<html>" in str(caught.value)


def test_malformed_once_then_a_good_answer_succeeds(serve):
    server = serve(lambda n, body: Reply(body=b'{"choi') if n == 0 else Reply())
    assert client_for(server).complete(messages("a")).text == "echo: a"
    assert server.count == 2


def test_an_answer_without_choices_is_malformed(serve):
    server = serve(lambda n, body: Reply(body={"object": "error", "message": "overloaded"}))
    with pytest.raises(EndpointError, match='no "choices"'):
        client_for(server).complete(messages("a"))
    assert server.count == MALFORMED_RETRIES + 1


# ---- the cache ---------------------------------------------------------------------------------------------------

def test_a_cache_hit_costs_no_request(serve, tmp_path):
    server = serve()
    first = client_for(server, cache_dir=tmp_path).complete(messages("a"))
    second_client = client_for(server, cache_dir=tmp_path)
    second = second_client.complete(messages("a"))
    assert server.count == 1
    assert second.cached and not first.cached and second.text == first.text == "echo: a"
    assert (second_client.stats.hits, second_client.stats.misses, second_client.stats.requests) == (1, 0, 0)
    second_client.complete(messages("a"), temperature=0.7)  # another body: another key
    assert server.count == 2 and second_client.stats.misses == 1


def test_the_cache_key_covers_the_whole_body_but_not_the_url(serve, tmp_path):
    client = client_for("http://127.0.0.1:1/v1")
    base = client.request_body(messages("a"))
    variants = [client.request_body(messages("b")), client.request_body(messages("a"), temperature=0.5),
                client.request_body(messages("a"), max_tokens=3), client.request_body(messages("a"), top_logprobs=5),
                client.request_body(messages("a"), seed=1), {**base, "model": "other"}]
    keys = {request_key(b) for b in [base, *variants]}
    assert len(keys) == len(variants) + 1
    assert request_key(client_for("http://127.0.0.1:2/v1").request_body(messages("a"))) == request_key(base)
    assert request_key(dict(reversed(base.items()))) == request_key(base)  # key order does not matter


def test_a_corrupt_cache_file_is_reported_deleted_and_asked_again(serve, tmp_path):
    server = serve()
    notes: list[str] = []
    client = client_for(server, notes, cache_dir=tmp_path)
    path = client.cache_path(request_key(client.request_body(messages("a"))))
    path.parent.mkdir(parents=True)
    path.write_text('{"completion": {"te')  # a run killed mid-write would never leave this, a disk fault might
    answer = client.complete(messages("a"))
    assert answer.text == "echo: a" and not answer.cached and server.count == 1
    assert client.stats.corrupt == 1 and len(notes) == 1 and str(path) in notes[0]
    assert json.loads(path.read_text())["completion"]["text"] == "echo: a"  # replaced by the good answer
    assert client_for(server, cache_dir=tmp_path).complete(messages("a")).cached


def test_a_corrupt_cache_file_is_deleted_even_when_asking_again_fails(serve, tmp_path):
    server = serve(lambda n, body: Reply(400, {"error": {"message": "no"}}))
    client = client_for(server, [], cache_dir=tmp_path)
    path = client.cache_path(request_key(client.request_body(messages("a"))))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x00\x00")
    with pytest.raises(EndpointError):
        client.complete(messages("a"))
    assert not path.exists() and client.stats.corrupt == 1


def test_cache_files_are_sharded_and_leave_no_temporary_files(serve, tmp_path):
    client = client_for(serve(), cache_dir=tmp_path)
    client.complete_many([messages(f"p{i}") for i in range(5)])
    files = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert len(files) == 5 and all(len(f.parts) == 2 and f.parts[1].startswith(f.parts[0]) for f in files)
    assert all(f.suffix == ".json" for f in files)


def test_an_interrupted_run_resumes_where_it_stopped(serve, tmp_path):
    prompts = [messages(f"p{i}") for i in range(6)]
    broken = serve(lambda n, body: Reply(400, {"error": {"message": "boom"}})
                   if body["messages"][0]["content"] == "p3" else Reply())
    with pytest.raises(EndpointError, match="cached in") as caught:
        client_for(broken, cache_dir=tmp_path, concurrency=1).complete_many(prompts)
    assert "boom" in str(caught.value)
    answered = broken.statuses.count(200)
    assert answered >= 3  # p0..p2 came back before p3 failed

    healthy = serve()
    answers = client_for(healthy, cache_dir=tmp_path, concurrency=1).complete_many(prompts)
    assert [a.text for a in answers] == [f"echo: p{i}" for i in range(6)]
    assert healthy.count == 6 - answered  # nothing that had been answered was asked again
    assert sum(a.cached for a in answers) == answered


# ---- concurrency and order ---------------------------------------------------------------------------------------

def test_complete_many_respects_the_concurrency_bound_and_keeps_input_order(serve):
    # later prompts answer faster, so arrival order differs from input order
    server = serve(lambda n, body: Reply(sleep=0.02 * (12 - int(body["messages"][0]["content"][1:]))))
    answers = client_for(server, concurrency=3).complete_many([messages(f"p{i}") for i in range(12)])
    assert [a.text for a in answers] == [f"echo: p{i}" for i in range(12)]
    assert server.max_in_flight == 3 and server.count == 12


def test_the_concurrency_bound_holds_across_threads_sharing_a_client(serve):
    server = serve(lambda n, body: Reply(sleep=0.05))
    client = client_for(server, concurrency=2)
    threads = [threading.Thread(target=client.complete, args=(messages(f"t{i}"),)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert server.count == 8 and server.max_in_flight == 2


def test_complete_many_takes_every_request_form(serve):
    server = serve()
    client = client_for(server)
    answers = client.complete_many([messages("list"), "string", ChatRequest(messages("req"), max_tokens=9),
                                    {"messages": messages("dict"), "temperature": 0.5}])
    assert [a.text for a in answers] == ["echo: list", "echo: string", "echo: req", "echo: dict"]
    by_text = {b["messages"][0]["content"]: b for b in server.bodies}
    assert by_text["req"]["max_tokens"] == 9 and by_text["dict"]["temperature"] == 0.5


def test_identical_requests_are_asked_once_with_a_cache_and_separately_without(serve, tmp_path):
    server = serve()
    client_for(server).complete_many([messages("same")] * 3)
    assert server.count == 3  # without a cache they are independent samples
    answers = client_for(server, cache_dir=tmp_path).complete_many([messages("same")] * 3)
    assert server.count == 4 and [a.text for a in answers] == ["echo: same"] * 3


def test_a_failed_request_stops_siblings_waiting_to_retry(serve):
    def script(n: int, body: dict[str, Any]) -> Reply:
        if body["messages"][0]["content"] == "bad":
            return Reply(400, {"error": {"message": "bad request"}}, sleep=0.2)
        return Reply(503, {"error": {"message": "busy"}}, {"Retry-After": "30"})

    server = serve(script)
    start = time.monotonic()
    with pytest.raises(EndpointError, match="bad request"):
        client_for(server, max_backoff=30.0, concurrency=2).complete_many([messages("busy"), messages("bad")])
    assert time.monotonic() - start < 5  # not the 30 s the busy one was told to wait
    assert server.count == 2


# ---- configuration -------------------------------------------------------------------------------------------------

def test_configuration_comes_from_bridle_variables_then_openai_ones(serve, monkeypatch):
    server = serve()
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:1/v1")  # would be refused: must not be used
    monkeypatch.setenv("BRIDLE_JUDGE_BASE_URL", server.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    monkeypatch.setenv("BRIDLE_JUDGE_MODEL", "env-judge")
    client = EndpointClient(max_retries=0)
    assert client.url == f"{server.url}/chat/completions" and client.model == "env-judge"
    client.complete(messages("a"))
    assert server.headers[0]["Authorization"] == "Bearer sk-openai" and server.bodies[0]["model"] == "env-judge"

    monkeypatch.setenv("BRIDLE_JUDGE_API_KEY", "sk-bridle")
    monkeypatch.delenv("BRIDLE_JUDGE_BASE_URL")
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    EndpointClient(model="m").complete(messages("b"))
    assert server.headers[1]["Authorization"] == "Bearer sk-bridle"


def test_no_key_sends_no_authorization_header(serve):
    server = serve()
    client_for(server).complete(messages("a"))
    assert "Authorization" not in server.headers[0]


def test_a_missing_base_url_names_both_variables():
    with pytest.raises(ConfigError) as caught:
        EndpointClient(model="m")
    assert "BRIDLE_JUDGE_BASE_URL" in str(caught.value) and "OPENAI_BASE_URL" in str(caught.value)


def test_a_missing_model_and_impossible_settings_are_config_errors():
    with pytest.raises(ConfigError, match="BRIDLE_JUDGE_MODEL"):
        EndpointClient("http://127.0.0.1:1/v1")
    with pytest.raises(ConfigError, match="concurrency"):
        EndpointClient("http://127.0.0.1:1/v1", model="m", concurrency=0)
    with pytest.raises(ConfigError, match="max_retries"):
        EndpointClient("http://127.0.0.1:1/v1", model="m", max_retries=-1)


def test_cache_path_is_none_without_a_cache_dir():
    assert client_for("http://127.0.0.1:1/v1").cache_path("ab" * 32) is None
    assert client_for("http://127.0.0.1:1/v1", cache_dir="/c").cache_path("ab" + "0" * 62) == \
        Path("/c/ab") / ("ab" + "0" * 62 + ".json")
