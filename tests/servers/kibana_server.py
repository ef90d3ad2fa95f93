"""A local stand-in for the two Kibana 8.x APIs `python -m streamapp.kibana import` uses.

- `GET /api/status`: the first `unavailable_first` requests (all of them with
  `never_available`) get 503 with `status.overall.level == "unavailable"`, as Kibana answers while
  its plugins start; then 200 with level "available".
- `POST [/s/<space>]/api/saved_objects/_import[?overwrite=true]`: checked the way Kibana's route
  checks it: the `kbn-xsrf` header is required (400 otherwise), the body is a multipart form with
  a `file` part whose file name ends in `.ndjson` (400 "Invalid file extension"), and
  `overwrite` cannot be combined with `createNewCopies`. Each NDJSON object must have a known
  type; its references must name an object in the same file or one already imported into that
  space (else a `missing_references` error); an existing id without `overwrite` is a `conflict`.
  Objects without errors are stored, as Kibana does, and the answer is
  `{"success", "successCount", "successResults", "errors"?, "warnings"}`.
- Credentials: with `username`/`password` or `api_key` set, every request needs the matching
  `Authorization` header (401 otherwise).
- Every request is recorded (`requests`), and every import with its parsed objects (`imports`).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlparse

from servers.local import LocalHTTPServer

SUPPORTED_TYPES = {"index-pattern", "lens", "dashboard", "search", "visualization", "config"}


@dataclass
class Request:
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]  # lowercased names
    body: bytes
    status: int = 0  # what was answered


@dataclass
class Import:
    space: str
    params: dict[str, str]
    filename: str
    part_content_type: str
    objects: list[dict[str, Any]] = field(default_factory=list)
    result: dict[str, Any] = field(default_factory=dict)


class KibanaServer(LocalHTTPServer):
    def __init__(
        self,
        *,
        unavailable_first: int = 2,
        never_available: bool = False,
        username: str | None = None,
        password: str | None = None,
        api_key: str | None = None,
        version: str = "8.19.0",
    ) -> None:
        self.unavailable_first = unavailable_first
        self.never_available = never_available
        self.version = version
        self.expected_auth: str | None = None
        if api_key is not None:
            self.expected_auth = f"ApiKey {api_key}"
        elif username is not None:
            pair = base64.b64encode(f"{username}:{password}".encode()).decode()
            self.expected_auth = f"Basic {pair}"
        self.requests: list[Request] = []
        self.imports: list[Import] = []
        self.store: dict[tuple[str, str, str], dict[str, Any]] = {}  # (space, type, id)
        self._status_calls = 0
        super().__init__()

    def status_requests(self) -> list[Request]:
        return [r for r in self.requests if r.path.endswith("/api/status")]

    # -- routing -------------------------------------------------------------------------------
    def respond(self, req: Request) -> tuple[int, Any]:
        with self._lock:
            self.requests.append(req)
        if self.expected_auth is not None and req.headers.get("authorization") != (
            self.expected_auth
        ):
            return 401, _error(401, "Unauthorized", "[security_exception]: unable to authenticate")
        space, path = "default", req.path
        if path.startswith("/s/"):
            _, _, space, rest = path.split("/", 3)
            path = f"/{rest}"
        if req.method == "GET" and path == "/api/status":
            return self._status()
        if req.method == "POST" and path == "/api/saved_objects/_import":
            return self._import(space, req)
        return 404, _error(404, "Not Found", "Not Found")

    def _status(self) -> tuple[int, Any]:
        with self._lock:
            self._status_calls += 1
            ready = not self.never_available and self._status_calls > self.unavailable_first
        level = "available" if ready else "unavailable"
        summary = "All services and plugins are available" if ready else "Kibana is starting"
        body = {
            "name": "kibana",
            "version": {"number": self.version, "build_flavor": "default"},
            "status": {
                "overall": {"level": level, "summary": summary},
                "core": {"elasticsearch": {"level": level}, "savedObjects": {"level": level}},
            },
        }
        return (200 if ready else 503), body

    def _import(self, space: str, req: Request) -> tuple[int, Any]:
        if "kbn-xsrf" not in req.headers:
            return 400, _error(400, "Bad Request", "Request must contain a kbn-xsrf header.")
        overwrite = req.params.get("overwrite") == "true"
        if overwrite and req.params.get("createNewCopies") == "true":
            return 400, _error(400, "Bad Request", "cannot use [overwrite] with [createNewCopies]")
        part = _file_part(req.headers.get("content-type", ""), req.body)
        if part is None:
            return 400, _error(
                400,
                "Bad Request",
                "[request body.file]: expected value of type [object] but got [undefined]",
            )
        filename = part.get_filename() or ""
        if not filename.endswith(".ndjson"):
            ext = filename[filename.rfind(".") :] if "." in filename else ""
            return 400, _error(400, "Bad Request", f"Invalid file extension {ext}")
        raw = part.get_payload(decode=True)
        assert isinstance(raw, bytes)
        try:
            objects = [
                json.loads(line) for line in raw.decode("utf-8").splitlines() if line.strip()
            ]
        except ValueError as exc:
            return 400, _error(400, "Bad Request", f"Unexpected token in JSON: {exc}")
        objects = [o for o in objects if "exportedCount" not in o]
        record = Import(space, req.params, filename, part.get_content_type(), objects)
        record.result = self._apply(space, objects, overwrite)
        with self._lock:
            self.imports.append(record)
        return 200, record.result

    def _apply(self, space: str, objects: list[dict[str, Any]], overwrite: bool) -> dict[str, Any]:
        in_file = {(o.get("type"), o.get("id")) for o in objects}
        errors, results = [], []
        with self._lock:
            for obj in objects:
                kind, oid = obj.get("type"), obj.get("id")
                attrs = obj.get("attributes") or {}
                title = attrs.get("title") or attrs.get("name") or ""
                meta = {"title": title, "icon": kind}
                if kind not in SUPPORTED_TYPES:
                    errors.append(
                        {
                            "id": oid,
                            "type": kind,
                            "meta": meta,
                            "error": {"type": "unsupported_type"},
                        }
                    )
                    continue
                missing = [
                    {"type": r.get("type"), "id": r.get("id")}
                    for r in obj.get("references", [])
                    if (r.get("type"), r.get("id")) not in in_file
                    and (space, r.get("type"), r.get("id")) not in self.store
                ]
                if missing:
                    errors.append(
                        {
                            "id": oid,
                            "type": kind,
                            "title": title,
                            "meta": meta,
                            "error": {"type": "missing_references", "references": missing},
                        }
                    )
                    continue
                exists = (space, kind, oid) in self.store
                if exists and not overwrite:
                    errors.append(
                        {
                            "id": oid,
                            "type": kind,
                            "title": title,
                            "meta": meta,
                            "error": {"type": "conflict"},
                        }
                    )
                    continue
                self.store[(space, kind, str(oid))] = obj
                item = {"type": kind, "id": oid, "meta": meta}
                if exists:
                    item["overwrite"] = True
                results.append(item)
        answer: dict[str, Any] = {
            "success": not errors,
            "successCount": len(results),
            "successResults": results,
            "warnings": [],
        }
        if errors:
            answer["errors"] = errors
        return answer

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _serve(self) -> None:
                url = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                req = Request(
                    method=self.command,
                    path=url.path,
                    params={k: v[-1] for k, v in parse_qs(url.query).items()},
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=self.rfile.read(length) if length else b"",
                )
                status, body = server.respond(req)
                req.status = status
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = _serve
            do_POST = _serve

        return Handler


def _error(status: int, error: str, message: str) -> dict[str, Any]:
    return {"statusCode": status, "error": error, "message": message}


def _file_part(content_type: str, body: bytes) -> Message | None:
    """The `file` field of a multipart/form-data body, parsed with the stdlib MIME parser."""
    if not content_type.startswith("multipart/form-data"):
        return None
    msg = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    if not msg.is_multipart():
        return None
    for part in msg.iter_parts():
        if part.get_param("name", header="content-disposition") == "file":
            return part
    return None
