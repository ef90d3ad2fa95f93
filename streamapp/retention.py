"""Time-based indices behind each document alias: rollover and retention.

An alias (`streamapp-tweets`) starts on one index, `<alias>-v1`. The leader worker checks it on
a timer and rolls it over with Elasticsearch's `_rollover` (which creates the next index from
the index template and moves the write flag to it in one step) once the write index is older
than `STREAMAPP_INDEX_ROLLOVER_AGE` or its primary shard holds more than
`STREAMAPP_INDEX_ROLLOVER_SIZE`: `<alias>-v1-000002`, `<alias>-v1-000003`, ... Searches, the
views and Kibana read the alias, so they see every index. With `STREAMAPP_RETENTION_DAYS` set,
an index whose newest document was processed longer ago than that is deleted; the write index
never is.

Elasticsearch's lifecycle management (ILM) does the same on a full distribution, but the
integration-test distribution of the local stack has none; one mechanism that works on both
is easier to reason about than two.

What has expired is a pure function (the names and order of an alias's indices are in
`streamapp.sinks.indices`), tested without a cluster; `Retention` applies it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from elasticsearch import AsyncElasticsearch
from elasticsearch import exceptions as es_exc
from faust.types import AppT

from streamapp.runtime import on_leader_every
from streamapp.settings import Settings
from streamapp.sinks.indices import next_index, parse_index, write_index_of

if TYPE_CHECKING:
    from streamapp.factory import WorkerParts

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IndexInfo:
    """One index behind an alias, as retention judges it."""

    name: str
    is_write: bool
    created: datetime
    #: `processed_at` of its newest document; None when it holds none.
    newest: datetime | None


def expired(indices: Iterable[IndexInfo], now: datetime, days: float) -> list[str]:
    """Indices to delete: not the write index, and nothing in them processed in the last
    `days` (an empty index by its creation time)."""
    cutoff = now - timedelta(days=days)
    return sorted(i.name for i in indices if not i.is_write and (i.newest or i.created) < cutoff)


@dataclass
class RetentionReport:
    """What one check did, per alias."""

    rolled_over: dict[str, str] = field(default_factory=dict)  # alias -> new write index
    deleted: list[str] = field(default_factory=list)


class Retention:
    """Rolls the document aliases over and deletes expired indices (the leader's timer calls
    `check`). Every step is idempotent: a check that fails half-way is completed by the next."""

    def __init__(self, client: AsyncElasticsearch, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.aliases = [settings.tweets_index, settings.news_index]
        self.rolled_over = 0
        self.deleted = 0

    def conditions(self) -> dict[str, Any]:
        s = self.settings
        found: dict[str, Any] = {}
        if s.index_rollover_age:
            found["max_age"] = s.index_rollover_age
        if s.index_rollover_size:
            found["max_primary_shard_size"] = s.index_rollover_size
        if s.index_rollover_docs:
            found["max_docs"] = s.index_rollover_docs
        if found:
            # A quiet alias keeps its index instead of gaining an empty one every period.
            found["min_docs"] = 1
        return found

    async def check(self, now: datetime | None = None) -> RetentionReport:
        report = RetentionReport()
        for alias in self.aliases:
            new = await self.rollover(alias)
            if new is not None:
                report.rolled_over[alias] = new
            if self.settings.retention_days is not None:
                report.deleted += await self.enforce(alias, now or datetime.now(UTC))
        return report

    async def rollover(self, alias: str, force: bool = False) -> str | None:
        """Roll `alias` over when a condition holds (or at once with `force`); the new write
        index, or None when it was not rolled over."""
        conditions = {} if force else self.conditions()
        if not force and not conditions:
            return None  # rollover turned off
        names = (await self.client.indices.get_alias(name=alias)).body
        current = write_index_of(names, alias)
        if current is None:
            raise RuntimeError(f"alias {alias} has no write index")
        # Every index of the chain counts, behind the alias or not (no longer, or never): a
        # name taken by one of them would fail every rollover.
        base = parse_index(current)[0]
        taken = (
            await self.client.indices.get(
                index=f"{base}-*",
                allow_no_indices=True,
                expand_wildcards="all",
                filter_path=["*.settings.index.creation_date"],
            )
        ).body
        target = next_index(current, taken)
        try:
            resp = await self.client.indices.rollover(
                alias=alias, new_index=target, conditions=conditions or None
            )
        except es_exc.BadRequestError as exc:
            if exc.error == "resource_already_exists_exception":
                # Created between the look above and now (another check); the next check
                # picks the generation after it.
                log.warning("cannot roll %s over to %s: it exists already", alias, target)
                return None
            raise
        if not resp.get("rolled_over"):
            return None
        self.rolled_over += 1
        log.info("rolled %s over from %s to %s", alias, current, target)
        return target

    async def indices(self, alias: str) -> list[IndexInfo]:
        """Every index behind `alias`, with its creation time and newest document."""
        body = (
            await self.client.indices.get(
                index=alias,
                filter_path=["*.aliases", "*.settings.index.creation_date"],
            )
        ).body
        resp = await self.client.search(
            index=alias,
            size=0,
            aggs={
                "by_index": {
                    "terms": {"field": "_index", "size": max(len(body), 1)},
                    "aggs": {"newest": {"max": {"field": "processed_at"}}},
                }
            },
        )
        newest = {
            b["key"]: _millis(b["newest"]["value"])
            for b in resp["aggregations"]["by_index"]["buckets"]
        }
        write = write_index_of(body, alias)
        return [
            IndexInfo(
                name=name,
                is_write=name == write,
                created=_millis(float(info["settings"]["index"]["creation_date"]))
                or datetime.now(UTC),
                newest=newest.get(name),
            )
            for name, info in body.items()
        ]

    async def enforce(self, alias: str, now: datetime) -> list[str]:
        """Delete the indices of `alias` that have expired; the names deleted."""
        days = self.settings.retention_days
        if days is None:
            return []
        doomed = expired(await self.indices(alias), now, days)
        for name in doomed:
            try:
                await self.client.indices.delete(index=name)
            except es_exc.NotFoundError:
                continue  # deleted by another check meanwhile
            self.deleted += 1
            log.info("deleted %s: nothing in it processed in the last %s days", name, days)
        return doomed


def _millis(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value / 1000, UTC)


def register_retention(app: AppT, parts: WorkerParts) -> Retention:
    retention = Retention(parts.sink.client, parts.settings)

    on_leader_every(
        app,
        parts.settings.retention_interval,
        "streamapp.retention",
        retention.check,
        "rollover / retention check",
    )
    return retention
