"""Bulk writes of classified documents to Elasticsearch, idempotent by document id.

Idempotent across rollovers too (`streamapp.retention`): `positions()` looks for each id in the
alias's write index and the index before it, and `write()` deletes the copy of a document
found in another index than the one its new version went to (the older index, after the write
index acknowledged the new one), so that an id keeps one document when a message is delivered
again just after a rollover. A repeat of a message older than the index before the write index
is stored again: looking further back would cost one read per index and document in every
batch.

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
from streamapp.sinks.base import Rejection, StoredPosition
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

#: How many of an alias's newest indices `positions()` looks in (the write index and the one
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
        # alias -> {id: indices} where `positions` found ids; read by the next `write`
        self._found: dict[str, dict[str, list[str]]] = {}

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

    # -- reads -------------------------------------------------------------------------
    async def positions(self, alias: str, ids: Sequence[str]) -> dict[str, StoredPosition]:
        """Kafka topic, partition and offset each existing document was indexed from
        (None values for documents indexed before positions were recorded)."""
        if not ids:
            return {}
        chain = await self._chain(alias)
        # Each index by name, never the alias: an alias of several indices (also one another
        # worker has rolled over since `_chain` looked) refuses a read by id. One request per
        # index, with a list of ids: a document object per id and index cost the worker
        # ~3% of its CPU to build.
        responses = await asyncio.gather(
            *(
                self._retrying(
                    f"mget {index}",
                    lambda index=index: self.client.mget(
                        index=index, ids=list(ids), source_includes=list(POSITION_FIELDS)
                    ),
                )
                for index in chain
            )
        )
        found: dict[str, StoredPosition] = {}
        # One batch at a time per alias: what an earlier, failed batch found is stale.
        where = self._found[alias] = {}
        for doc in (doc for resp in responses for doc in resp["docs"]):
            if not doc.get("found"):
                continue  # absent, or an index deleted meanwhile
            doc_id = doc["_id"]
            where.setdefault(doc_id, []).append(doc["_index"])
            if doc_id not in found:  # the write index's copy first
                src = doc.get("_source") or {}
                found[doc_id] = tuple(src.get(f) for f in POSITION_FIELDS)  # type: ignore[assignment]
        return found

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

    # -- writes ----------------------------------------------------------------------
    async def write(
        self, alias: str, docs: Sequence[tuple[str, dict[str, Any]]]
    ) -> list[Rejection]:
        """Index `(id, document)` pairs; return the documents Elasticsearch refused."""
        found = self._found.pop(alias, {})
        written: dict[str, str] = {}
        rejected = await self._index(alias, docs, written)
        # Only once the new version is stored (a refused document keeps its old one), and
        # told by Elasticsearch where it went: the list of indices may be stale.
        stale = [
            (index, doc_id)
            for doc_id, index_written in written.items()
            for index in found.get(doc_id, ())
            if index != index_written
        ]
        if stale:
            await self._delete(stale)
        return rejected

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
        self, alias: str, docs: Sequence[tuple[str, dict[str, Any]]], written: dict[str, str]
    ) -> list[Rejection]:
        """Index through the alias; `written` gets the index each stored document went to."""
        rejected: list[Rejection] = []
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
                operations.append({"index": {"_index": alias, "_id": doc_id}})
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
                    rejected += await self._index(alias, pending[:half], written)
                    rejected += await self._index(alias, pending[half:], written)
                    return rejected
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
                    return rejected
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
                result = item["index"]
                status = int(result.get("status", 0))
                if 200 <= status < 300:
                    written[doc_id] = result["_index"]
                    if chain is not None and result["_index"] != chain[1][0]:
                        # Rolled over by another worker: look again before the next read.
                        self._chains.pop(alias, None)
                        chain = None
                    continue
                error = result.get("error") or {}
                if status in RETRYABLE_STATUSES:
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
        return rejected

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
