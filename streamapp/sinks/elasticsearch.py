"""Bulk writes of classified documents to Elasticsearch, idempotent by document id.

Each write also says where the documents it replaced had been indexed from, which tells a
repeated message from a redelivery (`counting.is_repeat`). It learns that without reading
every id first: documents are created, and only the ids Elasticsearch reports as existing
(409) are read and then replaced.

Idempotent across rollovers too (`streamapp.retention`): a create in the write index cannot
see a copy in an older index, so when the alias has more than one index `write()` also looks
for the written ids in the index before the write index, and deletes a copy found in another
index than the one the new version went to (after the new one is acknowledged), so that an id
keeps one document when a message is delivered again just after a rollover. A repeat of a
message older than the index before the write index is stored again: looking further back
would cost one read per index and document in every batch.

Delivery contract (what the agents rely on to commit Kafka offsets only after indexing):
`write()` returns only when every document is either acknowledged by Elasticsearch or
permanently rejected by it (returned as a Rejection for the dead-letter topic). Outages,
timeouts, 429s and 5xx are retried with capped exponential backoff for as long as it takes,
which stalls the calling agent: that is the backpressure.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from typing import Any

import orjson
from elastic_transport import ConnectionError as TransportConnectionError
from elastic_transport import ConnectionTimeout, TransportError
from elasticsearch import AsyncElasticsearch
from elasticsearch import exceptions as es_exc
from elasticsearch.serializer import NdjsonSerializer, OrjsonSerializer

from streamapp.settings import Settings
from streamapp.sinks.base import Rejection, StoredPosition, WriteResult
from streamapp.sinks.indices import chain_for
from streamapp.sinks.mappings import (
    NEWS_PROPERTIES,
    POSITION_FIELDS,
    TWEET_PROPERTIES,
    concrete_index,
    index_template,
)

log = logging.getLogger(__name__)

# Per-item statuses that mean "try again later", not "this document is bad".
RETRYABLE_STATUSES = {408, 429, 500, 502, 503, 504}

#: The parts of a bulk response the sink reads: each item keeps its place in the list (every
#: index result has `_index` and `status`), so items still line up with the request.
BULK_FIELDS = ["items.*._index", "items.*.status", "items.*.error"]

MAX_ID_BYTES = 512

#: The error of a `create` whose id the index holds already.
CONFLICT = "version_conflict_engine_exception"

#: How many of an alias's newest indices `write()` looks in (the write index and the one
#: before it), and how long it trusts its list of them (a rollover by another worker is seen
#: at the latest this much later; one seen in a bulk response at once).
LOOKUP_DEPTH = 2
CHAIN_TTL = 10.0


class ElasticsearchSink:
    """A `sinks.base.DocumentSink`: one alias per document kind (tweets, news)."""

    def __init__(self, settings: Settings, client: AsyncElasticsearch | None = None) -> None:
        self.settings = settings
        self.client = client or make_client(settings)
        self.indices = {
            settings.tweets_index: TWEET_PROPERTIES,
            settings.news_index: NEWS_PROPERTIES,
        }
        self.retries = 0  # transient failures seen, for /health and tests
        self.available = False
        # alias -> (trusted until, newest indices, write index first)
        self._chains: dict[str, tuple[float, list[str]]] = {}

    async def close(self) -> None:
        await self.client.close()

    # -- set-up -------------------------------------------------------------------
    async def wait_until_available(self) -> None:
        """Block until the cluster answers `_cluster/health` (the minimal distribution
        has no `GET /`, so `ping()`/`info()` are not usable as readiness checks)."""
        await self._retrying("cluster health", lambda: self.client.cluster.health())
        self.available = True

    async def setup(self) -> None:
        """Create templates, indices and aliases if missing. Safe to run concurrently from
        several workers: 'already exists' is success."""
        await self.wait_until_available()
        s = self.settings
        for alias, props in self.indices.items():
            body = index_template(alias, props, s.index_shards, s.index_replicas)
            await self._retrying(
                f"template {alias}",
                lambda alias=alias, body=body: self.client.indices.put_index_template(
                    name=alias, **body
                ),
            )
            exists = await self._retrying(
                f"alias {alias}", lambda alias=alias: self.client.indices.exists_alias(name=alias)
            )
            if exists:
                # Fields added since the index was created are added in place (an additive
                # change); a changed type fails here, loudly, rather than per document later.
                await self._retrying(
                    f"mapping {alias}",
                    lambda alias=alias, props=props: self.client.indices.put_mapping(
                        index=alias, properties=props
                    ),
                )
                continue
            try:
                await self._retrying(
                    f"create {alias}",
                    lambda alias=alias: self.client.indices.create(
                        index=concrete_index(alias),
                        aliases={alias: {"is_write_index": True}},
                    ),
                )
                log.info("created index %s with alias %s", concrete_index(alias), alias)
            except es_exc.BadRequestError as exc:
                if exc.error != "resource_already_exists_exception":
                    raise

    # -- writes ----------------------------------------------------------------------
    async def write(self, alias: str, docs: Sequence[tuple[str, dict[str, Any]]]) -> WriteResult:
        """Index `(id, document)` pairs; return the documents Elasticsearch refused and where
        the documents this write replaced had been indexed from.

        Each document is first *created*: almost every id is new, and a create tells which
        are not (409) without a read of every id first. Those few are read, then replaced.
        """
        written: dict[str, str] = {}
        previous: dict[str, StoredPosition] = {}
        # id -> the indices an earlier copy was found in (the stale ones are deleted below)
        where: dict[str, list[str]] = {}
        rejected, existing = await self._index(alias, docs, written, "create")
        if existing:
            by_index: dict[str, list[str]] = {}
            for doc_id, _doc, index in existing:
                by_index.setdefault(index, []).append(doc_id)
            # The write index's copy is the one a repeat is told by: read before the older
            # indices, so their copies only fill in what it lacks.
            for found in await self._lookups(by_index):
                self._note(found, previous, where)
            again, _ = await self._index(alias, [(i, d) for i, d, _ in existing], written, "index")
            rejected += again
        # Copies in the alias's older indices: a create in the write index cannot see them.
        chain = await self._chain(alias)
        older: dict[str, list[str]] = {}
        for doc_id, index_written in written.items():
            for index in chain:
                if index != index_written:
                    older.setdefault(index, []).append(doc_id)
        if older:
            # In the chain's order, newest first: the first copy found is the one read.
            by_chain = {index: older[index] for index in chain if index in older}
            for found in await self._lookups(by_chain):
                self._note(found, previous, where)
        # Only once the new version is stored (a refused document keeps its old one), and
        # told by Elasticsearch where it went: the list of indices may be stale.
        stale = [
            (index, doc_id)
            for doc_id, indices in where.items()
            if doc_id in written
            for index in indices
            if index != written[doc_id]
        ]
        if stale:
            await self._delete(stale)
        return WriteResult(rejected, previous)

    async def _lookups(self, ids_by_index: dict[str, list[str]]) -> list[list[dict[str, Any]]]:
        """The `docs` of one mget per index (by name: an alias of several indices refuses a
        read by id), in the order of `ids_by_index`."""
        responses = await asyncio.gather(
            *(
                self._retrying(
                    f"mget {index}",
                    lambda index=index, ids=ids: self.client.mget(
                        index=index, ids=ids, source_includes=list(POSITION_FIELDS)
                    ),
                )
                for index, ids in ids_by_index.items()
            )
        )
        return [resp["docs"] for resp in responses]

    @staticmethod
    def _note(
        docs: list[dict[str, Any]],
        previous: dict[str, StoredPosition],
        where: dict[str, list[str]],
    ) -> None:
        for doc in docs:
            if not doc.get("found"):
                continue  # absent, or an index deleted meanwhile
            doc_id = doc["_id"]
            where.setdefault(doc_id, []).append(doc["_index"])
            if doc_id not in previous:
                src = doc.get("_source") or {}
                previous[doc_id] = tuple(src.get(f) for f in POSITION_FIELDS)  # type: ignore[assignment]

    async def _chain(self, alias: str) -> list[str]:
        now = time.monotonic()
        cached = self._chains.get(alias)
        if cached is not None and cached[0] > now:
            return cached[1]
        body = (
            await self._retrying(
                f"aliases of {alias}", lambda: self.client.indices.get_alias(name=alias)
            )
        ).body
        chain = list(chain_for(body, alias, LOOKUP_DEPTH))
        self._chains[alias] = (now + CHAIN_TTL, chain)
        return chain

    async def _delete(self, stale: list[tuple[str, str]]) -> None:
        """Delete older copies of documents (`(index, id)`); gone already is fine."""
        operations = [{"delete": {"_index": index, "_id": i}} for index, i in stale]
        resp = await self._retrying(
            "delete moved documents", lambda: self.client.bulk(operations=operations)
        )
        for item in resp["items"]:
            result = item["delete"]
            if int(result.get("status", 0)) not in (200, 404):
                # The older copy stays: the next delivery of this id deletes it again.
                log.warning(
                    "could not delete %s from %s after moving it: %s",
                    result.get("_id"),
                    result.get("_index"),
                    result.get("error"),
                )

    async def _index(
        self,
        alias: str,
        docs: Sequence[tuple[str, dict[str, Any]]],
        written: dict[str, str],
        op: str,
    ) -> tuple[list[Rejection], list[tuple[str, dict[str, Any], str]]]:
        """Write through the alias with `op` (`create` or `index`); `written` gets the index
        each stored document went to. Returns the rejected documents and, for `create`,
        those that exist already, `(id, document, index)`."""
        rejected: list[Rejection] = []
        existing: list[tuple[str, dict[str, Any], str]] = []
        pending = []
        for doc_id, doc in docs:
            # Elasticsearch validates ids per request, not per item: one long id fails the
            # whole bulk request with a 400, so such documents are refused here.
            if len(doc_id.encode()) > MAX_ID_BYTES:
                rejected.append(
                    Rejection(
                        doc_id=doc_id,
                        status=400,
                        error_type="id_too_long",
                        reason=f"document id is longer than {MAX_ID_BYTES} bytes",
                    )
                )
            else:
                pending.append((doc_id, doc))
        delay = self.settings.retry_initial
        while pending:
            operations: list[dict[str, Any]] = []
            for doc_id, doc in pending:
                operations.append({op: {"_index": alias, "_id": doc_id}})
                operations.append(doc)
            try:
                # Only what is read below: the full items (version, shards, sequence numbers)
                # made parsing the response ~4% of a loaded worker's CPU.
                resp = await self.client.bulk(operations=operations, filter_path=BULK_FIELDS)
            except es_exc.ApiError as exc:
                if exc.meta.status in (400, 413) and len(pending) > 1:
                    # Too large, or one document invalidates the whole request: bisect
                    # until the offending document stands alone.
                    half = len(pending) // 2
                    for part in (pending[:half], pending[half:]):
                        part_rejected, part_existing = await self._index(alias, part, written, op)
                        rejected += part_rejected
                        existing += part_existing
                    return rejected, existing
                if exc.meta.status in (400, 413):
                    doc_id = pending[0][0]
                    rejected.append(
                        Rejection(
                            doc_id=doc_id,
                            status=exc.meta.status,
                            error_type=str(exc.error),
                            reason=str(exc.info)[:1000],
                        )
                    )
                    return rejected, existing
                if exc.meta.status not in RETRYABLE_STATUSES:
                    raise
                delay = await self._backoff(f"bulk to {alias}", exc, delay)
                continue
            except (TransportConnectionError, ConnectionTimeout, TransportError) as exc:
                delay = await self._backoff(f"bulk to {alias}", exc, delay)
                continue
            self.available = True
            retry_later = []
            chain = self._chains.get(alias)
            for (doc_id, doc), item in zip(pending, resp["items"], strict=True):
                result = item[op]
                status = int(result.get("status", 0))
                if 200 <= status < 300:
                    written[doc_id] = result["_index"]
                    if chain is not None and result["_index"] != chain[1][0]:
                        # Rolled over by another worker: look again before the next read.
                        self._chains.pop(alias, None)
                        chain = None
                    continue
                error = result.get("error") or {}
                if status == 409 and error.get("type") == CONFLICT:
                    existing.append((doc_id, doc, result["_index"]))
                elif status in RETRYABLE_STATUSES:
                    retry_later.append((doc_id, doc))
                else:
                    rejected.append(
                        Rejection(
                            doc_id=doc_id,
                            status=status,
                            error_type=str(error.get("type", "unknown")),
                            reason=_error_reason(error),
                        )
                    )
            pending = retry_later
            if pending:
                delay = await self._backoff(
                    f"bulk to {alias}", RuntimeError(f"{len(pending)} items throttled"), delay
                )
        return rejected, existing

    # -- retry helpers ---------------------------------------------------------------
    async def _retrying(self, what: str, call: Any) -> Any:
        delay = self.settings.retry_initial
        while True:
            try:
                return await call()
            except (TransportConnectionError, ConnectionTimeout) as exc:
                delay = await self._backoff(what, exc, delay)
            except es_exc.ApiError as exc:
                if exc.meta.status not in RETRYABLE_STATUSES:
                    raise
                delay = await self._backoff(what, exc, delay)

    async def _backoff(self, what: str, exc: BaseException, delay: float) -> float:
        self.available = False
        self.retries += 1
        log.warning(
            "elasticsearch unavailable (%s: %s: %s); retrying in %.1fs, not consuming meanwhile",
            what,
            type(exc).__name__,
            str(exc)[:200],
            delay,
        )
        # Jitter keeps several workers from hammering a recovering cluster in lockstep.
        await asyncio.sleep(delay * random.uniform(0.8, 1.2))
        return min(delay * 2, self.settings.retry_max)

    async def healthy(self) -> bool:
        try:
            await self.client.options(request_timeout=2).cluster.health()
        except Exception:
            return False
        return True


def _error_reason(error: dict[str, Any]) -> str:
    reason = str(error.get("reason", ""))
    cause = error.get("caused_by") or {}
    if cause:
        reason += f" (caused by {cause.get('type')}: {cause.get('reason')})"
    return reason[:2000]


class OrjsonNdjsonSerializer(NdjsonSerializer):
    """Bulk bodies with orjson (the client's own `OrjsonSerializer` covers JSON, not NDJSON):
    the documents of a bulk request are most of the JSON a batch encodes."""

    def json_dumps(self, data: Any) -> bytes:
        return orjson.dumps(data, default=self.default)

    def json_loads(self, data: bytes) -> Any:
        return orjson.loads(data)


def make_client(settings: Settings) -> AsyncElasticsearch:
    kwargs: dict[str, Any] = {
        "hosts": [settings.elasticsearch_url],
        "serializers": {
            OrjsonSerializer.mimetype: OrjsonSerializer(),
            OrjsonNdjsonSerializer.mimetype: OrjsonNdjsonSerializer(),
        },
        "request_timeout": settings.elasticsearch_timeout,
        # Retries are ours (unbounded, with backoff and metrics), not the client's.
        "max_retries": 0,
        "retry_on_timeout": False,
    }
    if settings.elasticsearch_api_key is not None:
        kwargs["api_key"] = settings.elasticsearch_api_key.get_secret_value()
    elif settings.elasticsearch_username and settings.elasticsearch_password is not None:
        kwargs["basic_auth"] = (
            settings.elasticsearch_username,
            settings.elasticsearch_password.get_secret_value(),
        )
    if settings.elasticsearch_ca_certs is not None:
        kwargs["ca_certs"] = str(settings.elasticsearch_ca_certs)
    return AsyncElasticsearch(**kwargs)
