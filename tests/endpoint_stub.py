"""A scripted stub of an OpenAI-compatible chat-completions server on 127.0.0.1 (http.server in a thread), shared by
the endpoint client's tests and the commands' endpoint paths (`bridle eval`, `judge-check`, ...)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PROXY_VARS = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")
ENDPOINT_VARS = ("BRIDLE_JUDGE_BASE_URL", "OPENAI_BASE_URL", "BRIDLE_JUDGE_API_KEY", "OPENAI_API_KEY",
                 "BRIDLE_JUDGE_MODEL")


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict → JSON; bytes → sent as is; None → an echo completion of the request
    headers: dict[str, str] = field(default_factory=dict)
    sleep: float = 0.0  # seconds to wait before answering (past the client's timeout = a timeout)


def echo(body: dict[str, Any], **choice: Any) -> dict[str, Any]:
    """A chat completion whose text is "echo: <last message's content>"."""
    text = f"echo: {body['messages'][-1]['content']}"
    return {"id": "x", "object": "chat.completion", "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop",
                         **choice}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}


class StubServer:
    """Answers request n (0-based, in arrival order) with `script(n, body)`; records bodies, headers, statuses and
    the most requests it ever had in flight at once."""

    def __init__(self, script: Callable[[int, dict[str, Any]], Reply] | None = None) -> None:
        self.script = script or (lambda n, body: Reply())
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.statuses: list[int] = []
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with stub.lock:
                    n = len(stub.bodies)
                    stub.bodies.append(body)
                    stub.headers.append(dict(self.headers))
                    stub.in_flight += 1
                    stub.max_in_flight = max(stub.max_in_flight, stub.in_flight)
                try:
                    reply = stub.script(n, body)
                    time.sleep(reply.sleep)
                    payload = reply.body if reply.body is not None else echo(body)
                    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                    with stub.lock:
                        stub.statuses.append(reply.status)
                    self.send_response(reply.status)
                    for name, value in {"Content-Type": "application/json", **reply.headers}.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                except OSError:  # the client gave up (timeout) and closed the connection
                    pass
                finally:
                    with stub.lock:
                        stub.in_flight -= 1

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def count(self) -> int:
        return len(self.bodies)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
