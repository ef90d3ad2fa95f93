"""Index names, their order, what has expired and the rollover conditions: pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from streamapp.retention import IndexInfo, Retention, expired
from streamapp.settings import Settings, load_settings
from streamapp.sinks.indices import (
    chain_for,
    newest_first,
    next_index,
    parse_index,
    write_index_of,
)

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


def aliases(alias: str, write: str | None, *others: str) -> dict:
    body = {name: {"aliases": {alias: {"is_write_index": False}}} for name in others}
    if write is not None:
        body[write] = {"aliases": {alias: {"is_write_index": True}}}
    return body


def test_parse_index_names_the_project_makes() -> None:
    assert parse_index("t-v1") == ("t-v1", 1, 1, "")
    assert parse_index("t-v1-000002") == ("t-v1", 1, 2, "")
    assert parse_index("t-v1-000002-r20261201120000") == ("t-v1", 1, 2, "20261201120000")
    assert parse_index("t-v1-r20261201120000") == ("t-v1", 1, 1, "20261201120000")
    assert parse_index("my-v2-tweets-v3-000010") == ("my-v2-tweets-v3", 3, 10, "")
    assert parse_index("someone-elses") == ("someone-elses", 0, 0, "")


def test_next_index_follows_the_highest_generation_of_the_base() -> None:
    assert next_index("t-v1", ["t-v1"]) == "t-v1-000002"
    assert next_index("t-v1-000002", ["t-v1", "t-v1-000002"]) == "t-v1-000003"
    # A re-classified write index keeps its generation; the stamp is not carried on.
    assert next_index("t-v1-000004-r20261201120000", ["t-v1-000003"]) == "t-v1-000005"
    # Another base behind the same alias (a new mapping version) does not count.
    assert next_index("t-v2", ["t-v1-000007", "t-v2"]) == "t-v2-000002"


def test_newest_first_puts_the_write_index_first_then_generations() -> None:
    names = ["t-v1", "t-v1-000003", "t-v1-000002-r20261201120000", "t-v1-000004", "odd"]
    assert newest_first(names, "t-v1-000003") == [
        "t-v1-000003",
        "t-v1-000004",
        "t-v1-000002-r20261201120000",
        "t-v1",
        "odd",
    ]
    assert newest_first(["t-v1", "t-v2"]) == ["t-v2", "t-v1"]


def test_write_index_and_the_chain_the_sink_reads() -> None:
    body = aliases("t", "t-v1-000003", "t-v1", "t-v1-000002")
    assert write_index_of(body, "t") == "t-v1-000003"
    assert chain_for(body, "t", 2) == ["t-v1-000003", "t-v1-000002"]
    # One index without a flag is the write index, as Elasticsearch treats it.
    single: dict[str, Any] = {"t-v1": {"aliases": {"t": {}}}}
    assert write_index_of(single, "t") == "t-v1"
    assert chain_for(single, "t", 2) == ["t-v1"]
    # Several without a flag: none is.
    assert write_index_of({"a": {"aliases": {"t": {}}}, "b": {"aliases": {"t": {}}}}, "t") is None


def info(
    name: str, *, write: bool = False, age_days: float, newest_days: float | None
) -> IndexInfo:
    newest = None if newest_days is None else NOW - timedelta(days=newest_days)
    return IndexInfo(name, write, NOW - timedelta(days=age_days), newest)


def test_expired_by_the_newest_document_never_the_write_index() -> None:
    indices = [
        info("old", age_days=40, newest_days=31),
        info("recent-data-in-old-index", age_days=40, newest_days=29),
        info("empty-and-old", age_days=31, newest_days=None),
        info("empty-and-new", age_days=1, newest_days=None),
        info("write", write=True, age_days=60, newest_days=45),
    ]
    assert expired(indices, NOW, 30) == ["empty-and-old", "old"]
    assert expired(indices, NOW, 50) == []


def test_rollover_conditions_from_settings() -> None:
    def conditions(**kw: object) -> dict:
        return Retention(None, Settings(**kw)).conditions()  # type: ignore[arg-type]

    assert conditions() == {"max_age": "1d", "max_primary_shard_size": "50gb", "min_docs": 1}
    assert conditions(index_rollover_age=None, index_rollover_docs=1000) == {
        "max_primary_shard_size": "50gb",
        "max_docs": 1000,
        "min_docs": 1,
    }
    # Nothing to roll over on: rollover is off (no `min_docs` alone).
    assert conditions(index_rollover_age=None, index_rollover_size=None) == {}


@pytest.mark.parametrize(
    ("name", "value"),
    [("INDEX_ROLLOVER_AGE", "1 day"), ("INDEX_ROLLOVER_SIZE", "10GB"), ("RETENTION_DAYS", "0")],
)
def test_bad_rollover_and_retention_settings_are_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(f"STREAMAPP_{name}", value)
    with pytest.raises(SystemExit, match=f"STREAMAPP_{name}"):
        load_settings()


def test_blank_turns_rollover_off_and_retention_reads_days(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMAPP_INDEX_ROLLOVER_AGE", "")
    monkeypatch.setenv("STREAMAPP_RETENTION_DAYS", "7.5")
    s = load_settings()
    assert s.index_rollover_age is None and s.retention_days == 7.5
