"""A local stand-in for the X API v2 filtered stream, speaking its wire format.

- `GET/POST /2/tweets/search/stream/rules`: rules list (`data` absent when there are none),
  `{"add": [{"value", "tag"}]}` and `{"delete": {"ids": [...]}}`, with `meta.summary`.
- `GET /2/tweets/search/stream`: newline-delimited JSON over a long-lived response, blank
  keep-alive lines, one scripted *connection* per request: each is a list of steps.

Steps: ("tweet", payload) one message line; ("raw", bytes) bytes as they are (e.g. half a
line before a drop); ("keepalive",); ("sleep", seconds); ("status", code) answer the request
with an HTTP error instead of a stream; ("close",) end the response cleanly; ("drop",) break
the connection. When the script runs out, the connection is held open with keep-alives until
the client leaves.
"""

from __future__ import annotations

import json
import time
from collections import deque
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlparse

from servers.local import LocalHTTPServer

Step = tuple[Any, ...]


def tweet_message(
    tweet_id: str,
    text: str,
    author_id: str,
    users: list[tuple[str, str]],
    tags: list[str],
    lang: str = "en",
) -> dict[str, Any]:
    """A stream message as the X API sends it (users = (id, username) of `includes.users`)."""
    return {
        "data": {
            "id": tweet_id,
            "text": text,
            "created_at": "2026-11-28T10:00:00.000Z",
            "author_id": author_id,
            "lang": lang,
            "edit_history_tweet_ids": [tweet_id],
        },
        "includes": {"users": [{"id": u, "username": n, "name": n.title()} for u, n in users]},
        "matching_rules": [{"id": f"rule-{t}", "tag": t} for t in tags],
    }


OPERATIONAL_DISCONNECT = {
    "errors": [
        {
            "title": "operational-disconnect",
            "disconnect_type": "UpstreamOperationalDisconnect",
            "detail": "This stream has been disconnected upstream for operational reasons.",
            "type": "https://api.twitter.com/2/problems/operational-disconnect",
        }
    ]
}


class TwitterServer(LocalHTTPServer):
    def __init__(self, token: str = "test-token") -> None:
        self.token = token
        self.rules: dict[str, dict[str, str]] = {}
        self.connections: deque[list[Step]] = deque()
        self.requests: list[tuple[str, str, dict[str, list[str]]]] = []
        self.stream_requests = 0
        self._next_rule = 1000
        super().__init__()

    def add_rule(self, value: str, tag: str | None) -> str:
        with self._lock:
            self._next_rule += 1
            rule_id = str(self._next_rule)
            self.rules[rule_id] = {"id": rule_id, "value": value, **({"tag": tag} if tag else {})}
            return rule_id

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            # Chunked HTTP/1.1 like the real API: clients see each line as soon as it is sent.
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _json(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorized(self) -> bool:
                if self.headers.get("Authorization") == f"Bearer {server.token}":
                    return True
                self._json(
                    401,
                    {
                        "title": "Unauthorized",
                        "type": "about:blank",
                        "status": 401,
                        "detail": "Unauthorized",
                    },
                )
                return False

            def do_GET(self) -> None:
                url = urlparse(self.path)
                server.requests.append(("GET", url.path, parse_qs(url.query)))
                if not self._authorized():
                    return
                if url.path == "/2/tweets/search/stream/rules":
                    rules = list(server.rules.values())
                    meta = {"sent": datetime.now(UTC).isoformat(), "result_count": len(rules)}
                    self._json(200, {"data": rules, "meta": meta} if rules else {"meta": meta})
                elif url.path == "/2/tweets/search/stream":
                    self._stream()
                else:
                    self._json(404, {"title": "Not Found Error", "status": 404})

            def do_POST(self) -> None:
                url = urlparse(self.path)
                server.requests.append(("POST", url.path, parse_qs(url.query)))
                if not self._authorized():
                    return
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                sent = datetime.now(UTC).isoformat()
                if "add" in body:
                    created = [server.add_rule(r["value"], r.get("tag")) for r in body["add"]]
                    summary = {
                        "created": len(created),
                        "not_created": 0,
                        "valid": len(created),
                        "invalid": 0,
                    }
                    self._json(
                        201,
                        {
                            "data": [server.rules[i] for i in created],
                            "meta": {"sent": sent, "summary": summary},
                        },
                    )
                elif "delete" in body:
                    ids = body["delete"]["ids"]
                    deleted = [i for i in ids if server.rules.pop(i, None) is not None]
                    summary = {"deleted": len(deleted), "not_deleted": len(ids) - len(deleted)}
                    self._json(200, {"meta": {"sent": sent, "summary": summary}})
                else:
                    self._json(400, {"title": "Invalid Request", "status": 400})

            def _stream(self) -> None:
                with server._lock:
                    server.stream_requests += 1
                    steps = server.connections.popleft() if server.connections else []
                for step in steps:
                    if step[0] == "status":
                        self._json(step[1], {"title": "error", "status": step[1]})
                        return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self.close_connection = True

                def chunk(data: bytes) -> None:
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                    self.wfile.flush()

                try:
                    for step in steps:
                        kind = step[0]
                        if kind == "tweet":
                            chunk(json.dumps(step[1]).encode() + b"\r\n")
                        elif kind == "raw":
                            chunk(step[1])
                        elif kind == "keepalive":
                            chunk(b"\r\n")
                        elif kind == "sleep":
                            time.sleep(step[1])
                        elif kind == "close":  # a clean end of the stream
                            self.wfile.write(b"0\r\n\r\n")
                            self.wfile.flush()
                            return
                        elif kind == "drop":  # the connection breaks mid-stream
                            return
                    while True:  # script done: keep the connection alive like the real API
                        time.sleep(0.5)
                        chunk(b"\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    return

        return Handler
