"""Re-classification into a new index behind the alias, on the real Elasticsearch: a time
range re-labelled, the rest copied, interrupted and resumed, writes during the copy and
after the switch kept."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from helpers import stored_document

from streamapp.reclassify import reclassify
from streamapp.settings import Settings
from streamapp.sinks.elasticsearch import ElasticsearchSink


def doc(i: int, **fields: Any) -> dict[str, Any]:
    return stored_document(i, f"2026-12-01T10:{i:02d}:00+00:00", **fields)


@pytest.mark.integration
async def test_reclassify_a_range_resumably_while_writes_go_on(
    app_settings: Settings, es_sink: ElasticsearchSink, tmp_path: Path
) -> None:
    settings = app_settings
    alias = settings.tweets_index
    es = es_sink.client
    state = tmp_path / "state.json"
    out = io.StringIO()

    async def run(max_batches: int | None, **kw: Any) -> Any:
        return await reclassify(
            settings, "tweets", batch_size=7, state_path=state, max_batches=max_batches,
            progress=out, **kw,
        )  # fmt: skip

    (source,) = (await es.indices.get_alias(name=alias)).body
    assert (await es_sink.write(alias, [(d["id"], d) for d in map(doc, range(30))])).rejected == []
    await es.indices.refresh(index=alias)

    # Interrupted after two batches: 14 copied, nothing switched yet.
    s = await run(2, since="2026-12-01T10:10:00Z", until="2026-12-01T10:25:00Z")
    assert (s.phase, s.copied, s.source) == ("copy", 14, source)
    assert s.target.startswith(f"{alias}-v1-r") and list(
        (await es.indices.get_alias(name=alias)).body
    ) == [source]
    # The worker goes on writing to the alias meanwhile.
    assert (await es_sink.write(alias, [("d30", doc(30))])).rejected == []
    await es.indices.refresh(index=alias)

    # Resumed (same range, from the state file): the rest, then the alias moves.
    s = await run(4)
    assert s.phase == "catch-up" and s.copied == 31
    assert list((await es.indices.get_alias(name=alias)).body) == [s.target]
    # A write that reached the old index just before the switch, and one the worker
    # made to the new index after it, of a document the old index also holds.
    late = doc(40, id="late")
    await es.index(index=source, id="late", document=late)
    await es.index(index=source, id="late2", document=doc(41, id="late2"))
    await es_sink.write(alias, [("late2", doc(41, id="late2", classifier_version="worker"))])

    s = await run(None)
    assert s.phase == "done" and s.reclassified == 15
    await es.indices.refresh(index=s.target)
    hits = (await es.search(index=alias, size=100))["hits"]["hits"]
    got = {h["_source"]["id"]: h["_source"] for h in hits}
    assert len(got) == 33 and {h["_index"] for h in hits} == {s.target}
    for i in range(31):
        d = got[f"d{i}"]
        if 10 <= i < 25:  # re-classified by today's model
            assert d["classifier_version"] != "old-model", d
            assert d["sentiment_label"] == ("positive" if i % 2 == 0 else "negative")
        else:  # copied as they were
            assert d == doc(i)
    assert got["late"]["classifier_version"] == "old-model"
    assert got["late2"]["classifier_version"] == "worker"  # not overwritten
    assert "copied" in out.getvalue() and "now points at" in out.getvalue()
