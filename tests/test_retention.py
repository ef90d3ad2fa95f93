"""Rollover and retention on the real Elasticsearch: the sink keeps one document per id across
a rollover, the leader's check rolls over on its conditions and deletes what has expired (never
the write index), and re-classification copies every index behind the alias."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import stored_document

from streamapp.reclassify import reclassify
from streamapp.retention import Retention
from streamapp.settings import Settings
from streamapp.sinks.base import WriteResult
from streamapp.sinks.elasticsearch import ElasticsearchSink

pytestmark = pytest.mark.integration


def doc(i: int, *, offset: int | None = None, days_ago: float = 0, **fields: Any) -> dict:
    """Document `d<i>` processed `days_ago`, from offset `offset` (default `i`) of `t`/0."""
    processed = datetime.now(UTC) - timedelta(days=days_ago, seconds=100 - i)
    position = {
        "kafka_topic": "t",
        "kafka_partition": 0,
        "kafka_offset": i if offset is None else offset,
    }
    return stored_document(i, processed.isoformat(), **(position | fields))


async def where(es: Any, alias: str) -> dict[str, list[str]]:
    """id -> the indices holding a document with it."""
    await es.indices.refresh(index=alias)
    hits = (await es.search(index=alias, size=1000, source=False))["hits"]["hits"]
    out: dict[str, list[str]] = {}
    for hit in hits:
        out.setdefault(hit["_id"], []).append(hit["_index"])
    return out


async def test_an_id_keeps_one_document_across_a_rollover(
    app_settings: Settings, es_sink: ElasticsearchSink
) -> None:
    alias = app_settings.tweets_index
    es = es_sink.client
    first = [doc(i) for i in range(10)]
    written = await es_sink.write(alias, [(d["id"], d) for d in first])
    assert written == WriteResult([], {})
    (old,) = (await es.indices.get_alias(name=alias)).body

    # Another worker (the leader) rolls the alias over while this sink trusts its old list.
    new = await Retention(es, app_settings).rollover(alias, force=True)
    assert new == f"{old}-000002"
    # d0 delivered again from its record, d1 again from another record, d2..d4 new records
    # of ids already stored, n0 new. The creates go to the new index, which Elasticsearch
    # says; the sink then looks in the old index, by name (an alias of two indices would
    # refuse a read by id), finds the earlier copies there, reports where they came from and
    # deletes them.
    again = [doc(0), doc(1, offset=101), *(doc(i, offset=100 + i) for i in (2, 3, 4))]
    fresh = doc(50, id="n0")
    written = await es_sink.write(alias, [(d["id"], d) for d in (*again, fresh)])
    assert written == WriteResult([], {f"d{i}": ("t", 0, i) for i in range(5)})
    stored = await where(es, alias)
    assert {i: v for i, v in stored.items() if len(v) > 1} == {}  # one document per id
    moved = {"d0", "d1", "d2", "d3", "d4", "n0"}
    assert {i for i, (index,) in stored.items() if index == new} == moved
    assert {i for i, (index,) in stored.items() if index == old} == {f"d{i}" for i in range(5, 10)}

    # Now it knows both: d5 is found in the old one and moved; d0 is replaced in place (the
    # create in the write index is refused, and the copy there read).
    written = await es_sink.write(alias, [("d5", doc(5, offset=205)), ("d0", doc(0))])
    assert written == WriteResult([], {"d5": ("t", 0, 5), "d0": ("t", 0, 0)})
    assert (await where(es, alias))["d5"] == [new]

    # Found in both (a move interrupted before its delete): the write index's copy is the
    # one reported, and the older copy is deleted.
    await es.index(index=old, id="d0", document=doc(0, offset=7))
    await es.indices.refresh(index=old)
    written = await es_sink.write(alias, [("d0", doc(0, offset=300))])
    assert written == WriteResult([], {"d0": ("t", 0, 0)})
    assert (await where(es, alias))["d0"] == [new]
    got = await es.get(index=new, id="d0")
    assert got["_source"]["kafka_offset"] == 300  # the new version replaced the old


async def test_a_write_creates_new_ids_replaces_known_ones_and_reports_them(
    app_settings: Settings, es_sink: ElasticsearchSink
) -> None:
    """One index (no rollover): what a write replaced comes from the refused creates."""
    alias = app_settings.tweets_index
    es = es_sink.client
    assert await es_sink.write(alias, [("a", doc(1, id="a")), ("b", doc(2, id="b"))]) == (
        WriteResult([], {})
    )
    # "a" again from its own record (a redelivery), "b" from another one (a repeat), "c" new,
    # and one that Elasticsearch refuses for good: rejected, never reported as replaced.
    bad = doc(4, id="bad") | {"sentiment_score": "not a number"}
    written = await es_sink.write(
        alias,
        [
            ("a", doc(1, id="a")),
            ("b", doc(9, id="b", sentiment_label="positive")),
            ("c", doc(3, id="c")),
            ("bad", bad),
        ],
    )
    assert written.previous == {"a": ("t", 0, 1), "b": ("t", 0, 2)}
    assert [(r.doc_id, r.status) for r in written.rejected] == [("bad", 400)]
    b = (await es.get(index=alias, id="b"))["_source"]
    assert (b["kafka_offset"], b["sentiment_label"]) == (9, "positive")
    assert sorted(await where(es, alias)) == ["a", "b", "c"]


async def test_the_leader_check_rolls_over_on_its_conditions_and_deletes_what_expired(
    app_settings: Settings, es_sink: ElasticsearchSink
) -> None:
    alias = app_settings.tweets_index
    es = es_sink.client
    settings = app_settings.model_copy(
        update={"index_rollover_age": None, "index_rollover_docs": 5, "retention_days": 30}
    )
    retention = Retention(es, settings)
    (first,) = (await es.indices.get_alias(name=alias)).body

    # Four documents: below the condition, nothing happens.
    await es_sink.write(alias, [(d["id"], d) for d in (doc(i, days_ago=40) for i in range(4))])
    await es.indices.refresh(index=alias)
    report = await retention.check()
    assert report.rolled_over == {} and report.deleted == []

    # A fifth: rolled over; the old index holds only 40-day-old documents but was the write
    # index until now ... and is deleted by the same check, being no longer written to.
    await es_sink.write(alias, [("d4", doc(4, days_ago=40))])
    await es.indices.refresh(index=alias)
    report = await retention.check()
    second = f"{first}-000002"
    assert report.rolled_over == {alias: second} and report.deleted == [first]
    assert list((await es.indices.get_alias(name=alias)).body) == [second]

    # An empty write index is not rolled over again (min_docs), and never deleted, however
    # old the retention judges it.
    report = await retention.check(now=datetime.now(UTC) + timedelta(days=100))
    assert report.rolled_over == {} and report.deleted == []

    # Recent documents keep an index; old ones in the write index keep nothing from deletion.
    es_sink._chains.clear()
    await es_sink.write(alias, [(f"r{i}", doc(i, id=f"r{i}")) for i in range(5)])
    await es.indices.refresh(index=alias)
    report = await retention.check()
    third = f"{first}-000003"
    assert report.rolled_over == {alias: third} and report.deleted == []
    report = await retention.check(now=datetime.now(UTC) + timedelta(days=31))
    assert report.deleted == [second]
    assert list((await es.indices.get_alias(name=alias)).body) == [third]
    assert retention.rolled_over == 2 and retention.deleted == 2


async def test_reclassify_copies_every_index_behind_the_alias(
    app_settings: Settings, es_sink: ElasticsearchSink, tmp_path: Path
) -> None:
    alias = app_settings.tweets_index
    es = es_sink.client
    retention = Retention(es, app_settings)
    (first,) = (await es.indices.get_alias(name=alias)).body
    old = [doc(i, days_ago=2) for i in range(6)]
    await es_sink.write(alias, [(d["id"], d) for d in old])
    second = await retention.rollover(alias, force=True)
    es_sink._chains.clear()
    recent = [doc(i) for i in range(6, 10)]
    await es_sink.write(alias, [(d["id"], d) for d in recent])
    await es.indices.refresh(index=alias)
    out = io.StringIO()

    # A range that touches the older index only: the write index is left as it is.
    since = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    until = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    s = await reclassify(
        app_settings, "tweets", since, until, batch_size=4, state_path=tmp_path / "a.json",
        progress=out,
    )  # fmt: skip
    assert s.phase == "done" and s.reclassified == 6 and len(s.replaced) == 1
    ((source, copy),) = s.replaced
    assert source == first and copy.startswith(f"{first}-r")
    body = (await es.indices.get_alias(name=alias)).body
    assert set(body) == {copy, second}
    assert body[second]["aliases"][alias]["is_write_index"] is True

    # Everything: both indices copied, the write flag on the write index's copy.
    s = await reclassify(
        app_settings, "tweets", batch_size=4, state_path=tmp_path / "b.json", progress=out
    )
    assert s.phase == "done" and s.reclassified == 10
    assert [src for src, _ in s.replaced] == [copy, second]
    body = (await es.indices.get_alias(name=alias)).body
    assert set(body) == {target for _, target in s.replaced}
    write = s.replaced[-1][1]
    assert write.startswith(f"{second}-r") and body[write]["aliases"][alias]["is_write_index"]
    await es.indices.refresh(index=alias)
    hits = (await es.search(index=alias, size=100))["hits"]["hits"]
    assert len(hits) == 10
    for hit in hits:
        d = hit["_source"]
        assert d["classifier_version"] != "old-model", d
        assert d["sentiment_label"] == ("positive" if int(d["id"][1:]) % 2 == 0 else "negative")
    # The next rollover follows the copy's generation ... and skips a name an index outside
    # the alias holds already.
    await es.indices.create(index=f"{first}-000003")
    assert await retention.rollover(alias, force=True) == f"{first}-000004"
