"""Web view behaviour that needs no running worker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from yarl import URL

from streamapp.factory import StreamApp, create_app
from streamapp.settings import load_settings
from streamapp.views import (
    BadRequest,
    HateView,
    HealthView,
    SentimentView,
    iso,
    window_report,
    window_row,
)


class FakeRequest:
    query: dict[str, str] = {}
    rel_url = URL("/sentiment/")


@pytest.fixture
def app(tmp_path: Path) -> StreamApp:
    return create_app(load_settings(table_store="memory://", data_dir=tmp_path / "data"))


async def call(app: StreamApp, view_cls: type, app_stopping: bool) -> tuple[int, Any]:
    view = view_cls(app, app.web)
    if app_stopping:
        app._stopped.set()
    try:
        response = await view.get(FakeRequest())
    finally:
        app._stopped.clear()
    return response.status, json.loads(response.body)


async def test_views_answer_503_while_the_worker_stops(app: StreamApp) -> None:
    for view_cls in (SentimentView, HateView, HealthView):
        status, body = await call(app, view_cls, app_stopping=True)
        assert (status, body["status"]) == (503, "stopping"), view_cls


async def test_window_views_answer_when_running(app: StreamApp) -> None:
    status, body = await call(app, SentimentView, app_stopping=False)
    assert status == 200 and body["window"]["kind"] == "tumbling" and body["totals"] == {}
    assert body["known_sources"] == []
    current = body["current"]
    assert current["end_time"] == iso(current["start"] + 60.0)
    assert current["start_time"].endswith("Z") and body["now_time"].endswith("Z")


def test_window_rows_give_iso_times_with_the_exclusive_end() -> None:
    row = window_row((1_796_114_400.0, 1_796_114_459.9), 60.0, {"twitter": {"neutral": 2}})
    assert (row["start_time"], row["end_time"]) == (
        "2026-12-01T08:40:00Z",
        "2026-12-01T08:41:00Z",
    )
    assert row["total"] == 2


async def test_unknown_parameters_are_a_400_like_on_recent(app: StreamApp) -> None:
    FakeRequest.query = {"windw": "hopping"}
    try:
        status, body = await call(app, HateView, app_stopping=False)
    finally:
        FakeRequest.query = {}
    assert status == 400 and "windw" in body["error"] and "window" in body["error"]


def faceted_items() -> list[Any]:
    w1, w2 = (1_000_020.0, 1_000_079.9), (1_000_080.0, 1_000_139.9)
    twitter = {"|negative": 5, "lang=en|negative": 3, "lang=und|negative": 2}
    news = {"|neutral": 4, "lang=de|neutral": 4, "term=Climate|neutral": 4}
    return [
        (("twitter|tweets|0", w1), {"o": 9, "c": {**twitter, "term=Climate|negative": 2}}),
        (("newsapi|news|1", w2), {"o": 3, "c": news}),
    ]


def test_window_reports_one_term_or_language_and_compare_the_terms(app: StreamApp) -> None:
    counter = app.parts.tables.sentiment["tumbling"]
    items, tracked = faceted_items(), ["Climate", "AI"]
    total = window_report(counter, {}, 1_000_200.0, items, tracked)
    assert total["totals"] == {"twitter": {"negative": 5}, "newsapi": {"neutral": 4}}
    assert total["known_languages"] == ["de", "en", "und"] and total["terms"] == tracked
    assert total["term_totals"] == {"Climate": {"negative": 2, "neutral": 4}, "AI": {}}
    # Any case of a tracked term; its counts only.
    climate = window_report(counter, {"term": "climate"}, 1_000_200.0, items, tracked)
    assert climate["term"] == "Climate"
    assert climate["totals"] == {"twitter": {"negative": 2}, "newsapi": {"neutral": 4}}
    english = window_report(counter, {"lang": "EN"}, 1_000_200.0, items, tracked)
    assert english["totals"] == {"twitter": {"negative": 3}} and english["lang"] == "en"
    news = window_report(
        counter, {"term": "Climate", "source": "newsapi"}, 1_000_200.0, items, tracked
    )
    assert news["totals"] == {"newsapi": {"neutral": 4}} and news["window_count"] == 1
    assert news["term_totals"] == {"Climate": {"neutral": 4}, "AI": {}}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"term": "untracked"}, "not tracked"),
        ({"lang": "english!"}, "lang must be"),
        ({"term": "Climate", "lang": "en"}, "not both"),
    ],
)
def test_an_untracked_term_or_a_bad_language_is_a_400(
    app: StreamApp, query: dict[str, str], message: str
) -> None:
    with pytest.raises(BadRequest, match=message):
        window_report(app.parts.tables.hate["tumbling"], query, 0.0, [], ["Climate"])
