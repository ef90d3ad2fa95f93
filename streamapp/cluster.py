"""Several workers answer as one: each view gathers the partitions other workers own.

Faust spreads the input partitions, and with them the table partitions, over the workers of one
app id; a worker's tables hold only its own. A view asked on any worker therefore answers from
its own partitions and asks the owners of the others (Faust's assignor knows which worker owns
which table partition, and every worker's advertised URL) for theirs, with `scope=local`,
within a bounded time. What it could not get is said (`missing_partitions`), never silently
left out.

Table keys carry their source partition, so gathering is a union: an item that two workers
report (a partition moving during a rebalance, a standby copy) is kept once, the one with the
higher offset watermark.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from faust.types import AppT

from streamapp.counting import TableKey

#: `scope=local` answers carry table items as [key, start, end, value].
Item = tuple[TableKey, Mapping[str, Any]]


def encode_items(items: Iterable[Item]) -> list[list[Any]]:
    return [[key, window[0], window[1], value] for (key, window), value in items]


def decode_items(rows: Iterable[list[Any]]) -> list[Item]:
    return [
        ((str(key), (float(start), float(end))), dict(value)) for key, start, end, value in rows
    ]


def union(*sources: Iterable[Item]) -> list[Item]:
    """Items of several workers, each (key, window) once: the highest watermark wins."""
    out: dict[TableKey, Mapping[str, Any]] = {}
    for items in sources:
        for key, value in items:
            have = out.get(key)
            if have is None or int(value["o"]) > int(have["o"]):
                out[key] = value
    return list(out.items())


def sum_numbers(parts: Iterable[Any]) -> Any:
    """Numbers summed leaf by leaf over several workers' JSON (dicts merged, other values
    taken from the first worker that has them)."""
    parts = [p for p in parts if p is not None]
    if not parts:
        return None
    if all(isinstance(p, bool) for p in parts):
        return all(parts)
    if all(isinstance(p, int | float) and not isinstance(p, bool) for p in parts):
        return sum(parts)
    if all(isinstance(p, dict) for p in parts):
        keys: list[str] = []
        for p in parts:
            keys += [k for k in p if k not in keys]
        return {k: sum_numbers(p.get(k) for p in parts) for k in keys}
    return parts[0]


@dataclass
class Gathered:
    """Answers of the other workers to one request."""

    bodies: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def workers(self, me: str) -> dict[str, str]:
        """Worker URL -> "ok", or why it did not answer."""
        return {me: "ok", **dict.fromkeys(self.bodies, "ok"), **self.errors}


class Cluster:
    """The other workers of this app, as the partition assignor knows them."""

    def __init__(self, app: AppT, timeout: float) -> None:
        self.app = app
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def me(self) -> str:
        return str(self.app.conf.canonical_url).rstrip("/")

    def owners(self) -> dict[str, dict[str, list[int]]]:
        """Worker URL -> {changelog topic: active partitions}, this worker included."""
        try:
            metadata = self.app.router.tables_metadata()
        except Exception:  # before the first assignment
            return {}
        return {
            str(url).rstrip("/"): {topic: sorted(parts) for topic, parts in topics.items()}
            for url, topics in metadata.items()
        }

    def peers(self) -> list[str]:
        return [url for url in self.owners() if url != self.me]

    def local_partitions(self, changelog_topic: str) -> list[int]:
        """The partitions of `changelog_topic` this worker holds as active."""
        return sorted(
            tp.partition
            for tp in self.app.assignor.assigned_actives()
            if tp.topic == changelog_topic
        )

    async def gather(self, path: str, params: Mapping[str, str]) -> Gathered:
        """GET `path` with `scope=local` from every other worker, concurrently, each within
        `timeout` seconds."""
        out = Gathered()
        peers = self.peers()
        if not peers:
            return out
        session = await self._client()
        query = {**params, "scope": "local"}

        async def one(url: str) -> None:
            try:
                async with session.get(url + path, params=query) as resp:
                    body = await resp.json(content_type=None)
                    if resp.status >= 500 and not isinstance(body, dict):
                        raise RuntimeError(f"HTTP {resp.status}")
                    out.bodies[url] = body if isinstance(body, dict) else {}
            except Exception as exc:  # a worker gone, slow or restarting: said, not hidden
                out.errors[url] = f"{type(exc).__name__}: {exc}"[:200] or type(exc).__name__

        await asyncio.gather(*(one(url) for url in peers))
        return out

    async def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
