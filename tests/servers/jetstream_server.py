"""A local stand-in for Bluesky Jetstream, speaking its wire format over a real websocket.

- `GET /subscribe` upgrades to a websocket; anything else is HTTP 404, a bad `cursor` or
  `maxMessageSizeBytes` is HTTP 400 (as Jetstream answers bad query parameters).
- Query parameters: `wantedCollections` (repeatable, `app.bsky.feed.*` prefixes allowed),
  `wantedDids` (repeatable), `cursor` (unix microseconds: replay events with `time_us` above it),
  `maxMessageSizeBytes` (larger events are not sent; 0 = no limit).
- One JSON text frame per event. `identity` and `account` events go to every subscriber (only
  `wantedDids` filters them); commits are filtered by collection, as Jetstream does.
- Client messages `{"type": "options_update", "payload": {...}}` replace the filters.

The event log is `events` (dicts, or `Raw` frames for garbage); without a cursor a connection
starts at `live_from` (default 0, as if the whole log happened after it connected), and
`publish()` appends live events. `drops[i]` = after how many frames the i-th connection is cut
(abruptly, as a network failure, or with `drop_code` as a close frame). Each connection is
recorded in `connections`, with the cursor it asked for and the frames it was sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

POST = "app.bsky.feed.post"
BASE_TIME_US = 1_764_320_000_000_000  # 2025-11-28T08:53:20Z


@dataclass(frozen=True)
class Raw:
    """A frame sent as it is (not valid JSON, say), placed in the log at `time_us`."""

    time_us: int
    text: str


@dataclass
class Connection:
    cursor: int | None
    wanted_collections: list[str]
    wanted_dids: list[str]
    max_message_bytes: int
    sent: list[int] = field(default_factory=list)  # time_us of each frame sent
    options_updates: list[dict[str, Any]] = field(default_factory=list)
    dropped: bool = False


def post_event(
    time_us: int,
    did: str,
    rkey: str,
    text: str,
    *,
    langs: list[str] | None = None,
    created_at: str | None = "2025-11-28T08:50:00.000Z",
) -> dict[str, Any]:
    """A `commit` creating an `app.bsky.feed.post`, shaped like Jetstream's."""
    record: dict[str, Any] = {"$type": POST, "text": text}
    if created_at is not None:
        record["createdAt"] = created_at
    if langs is not None:
        record["langs"] = langs
    return {
        "did": did,
        "time_us": time_us,
        "kind": "commit",
        "commit": {
            "rev": f"3lrev{time_us % 10**8}",
            "operation": "create",
            "collection": POST,
            "rkey": rkey,
            "record": record,
            "cid": f"bafyreig{rkey.lower()}{time_us % 10**6}",
        },
    }


def delete_event(time_us: int, did: str, rkey: str, collection: str = POST) -> dict[str, Any]:
    return {
        "did": did,
        "time_us": time_us,
        "kind": "commit",
        "commit": {
            "rev": f"3lrev{time_us % 10**8}",
            "operation": "delete",
            "collection": collection,
            "rkey": rkey,
        },
    }


def like_event(time_us: int, did: str, rkey: str, subject: str) -> dict[str, Any]:
    return {
        "did": did,
        "time_us": time_us,
        "kind": "commit",
        "commit": {
            "rev": f"3lrev{time_us % 10**8}",
            "operation": "create",
            "collection": "app.bsky.feed.like",
            "rkey": rkey,
            "record": {
                "$type": "app.bsky.feed.like",
                "createdAt": "2025-11-28T08:50:00.000Z",
                "subject": {"cid": "bafyreisubject", "uri": subject},
            },
            "cid": f"bafyreilike{rkey.lower()}",
        },
    }


def identity_event(time_us: int, did: str, handle: str) -> dict[str, Any]:
    return {
        "did": did,
        "time_us": time_us,
        "kind": "identity",
        "identity": {"did": did, "handle": handle, "seq": time_us % 10**9, "time": "2025-11-28"},
    }


def account_event(time_us: int, did: str, active: bool = True) -> dict[str, Any]:
    return {
        "did": did,
        "time_us": time_us,
        "kind": "account",
        "account": {"active": active, "did": did, "seq": time_us % 10**9, "time": "2025-11-28"},
    }


def _time_us(event: dict[str, Any] | Raw) -> int:
    return event.time_us if isinstance(event, Raw) else int(event["time_us"])


class JetstreamServer:
    def __init__(
        self,
        events: list[dict[str, Any] | Raw] | None = None,
        *,
        drops: list[int] | None = None,
        drop_code: int | None = None,
    ) -> None:
        self.events: list[dict[str, Any] | Raw] = list(events or [])
        self.drops = list(drops or [])
        self.drop_code = drop_code  # None: cut the TCP connection without a close frame
        self.live_from = 0
        self.connections: list[Connection] = []
        self.rejected: list[tuple[str, int]] = []
        self._new_event = asyncio.Condition()
        self._server: Server | None = None

    @property
    def url(self) -> str:
        """The subscribe URL a client would be configured with."""
        return f"{self.base}/subscribe?wantedCollections={POST}"

    @property
    def base(self) -> str:
        assert self._server is not None
        port = next(iter(self._server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}"

    @property
    def cursors(self) -> list[int | None]:
        return [c.cursor for c in self.connections]

    async def __aenter__(self) -> JetstreamServer:
        self._server = await serve(
            self._serve, "127.0.0.1", 0, process_request=self._check_request, compression=None
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def publish(self, event: dict[str, Any] | Raw) -> None:
        """A live event: connected clients get it at once."""
        async with self._new_event:
            self.events.append(event)
            self._new_event.notify_all()

    # -- handshake ------------------------------------------------------------------------

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if url.path != "/subscribe":
            return self._reject(connection, request, HTTPStatus.NOT_FOUND, "not found")
        params = parse_qs(url.query)
        for name in ("cursor", "maxMessageSizeBytes"):
            value = params.get(name, ["0"])[-1]
            try:
                int(value)
            except ValueError:
                return self._reject(connection, request, HTTPStatus.BAD_REQUEST, f"bad {name}")
        return None

    def _reject(
        self, connection: ServerConnection, request: Request, status: HTTPStatus, text: str
    ) -> Response:
        self.rejected.append((request.path, status.value))
        return connection.respond(status, text + "\n")

    # -- stream ---------------------------------------------------------------------------

    async def _serve(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        params = parse_qs(urlsplit(ws.request.path).query)
        cursor = int(params["cursor"][-1]) if "cursor" in params else None
        conn = Connection(
            cursor=cursor,
            wanted_collections=params.get("wantedCollections", []),
            wanted_dids=params.get("wantedDids", []),
            max_message_bytes=max(0, int(params.get("maxMessageSizeBytes", ["0"])[-1])),
        )
        index = len(self.connections)
        self.connections.append(conn)
        limit = self.drops[index] if index < len(self.drops) else None
        # The reader ends when the client goes; the sender may be waiting for live events.
        tasks = {
            asyncio.create_task(self._send_events(ws, conn, limit)),
            asyncio.create_task(self._read_options(ws, conn)),
        }
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _send_events(self, ws: ServerConnection, conn: Connection, limit: int | None) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self._send_loop(ws, conn, limit)

    async def _send_loop(self, ws: ServerConnection, conn: Connection, limit: int | None) -> None:
        position = 0 if conn.cursor is not None else self.live_from
        while True:
            async with self._new_event:
                while position >= len(self.events):
                    await self._new_event.wait()
                event = self.events[position]
            position += 1
            if conn.cursor is not None and _time_us(event) <= conn.cursor:
                continue
            if not self._wanted(conn, event):
                continue
            frame = event.text if isinstance(event, Raw) else json.dumps(event)
            if conn.max_message_bytes and len(frame.encode()) > conn.max_message_bytes:
                continue
            await ws.send(frame)
            conn.sent.append(_time_us(event))
            if limit is not None and len(conn.sent) >= limit:
                conn.dropped = True
                # Let the frames reach the client first: a drop after K events means K arrived.
                await asyncio.sleep(0.05)
                if self.drop_code is None:
                    assert ws.transport is not None
                    ws.transport.abort()
                else:
                    await ws.close(self.drop_code, "going away")
                return

    async def _read_options(self, ws: ServerConnection, conn: Connection) -> None:
        try:
            async for message in ws:
                try:
                    update = json.loads(message)
                except ValueError:
                    continue
                if not isinstance(update, dict) or update.get("type") != "options_update":
                    continue
                payload = update.get("payload") or {}
                conn.options_updates.append(payload)
                if "wantedCollections" in payload:
                    conn.wanted_collections = list(payload["wantedCollections"] or [])
                if "wantedDids" in payload:
                    conn.wanted_dids = list(payload["wantedDids"] or [])
                if "maxMessageSizeBytes" in payload:
                    conn.max_message_bytes = max(0, int(payload["maxMessageSizeBytes"] or 0))
        except ConnectionClosed:
            return

    @staticmethod
    def _wanted(conn: Connection, event: dict[str, Any] | Raw) -> bool:
        if isinstance(event, Raw):
            return True
        if conn.wanted_dids and event.get("did") not in conn.wanted_dids:
            return False
        if event.get("kind") != "commit" or not conn.wanted_collections:
            return True
        collection = str((event.get("commit") or {}).get("collection", ""))
        for wanted in conn.wanted_collections:
            if wanted.endswith(".*") and collection.startswith(wanted[:-1]):
                return True
            if collection == wanted:
                return True
        return False
