"""The shipped Kibana saved objects, checked offline: references resolve inside the file, and
every field they use exists with a usable type in the mapping the sink really creates in the real
Elasticsearch (Kibana itself cannot run here; see streamapp/kibana/objects.py)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from streamapp.alerts import ALERTS_MAPPING, ensure_alerts_index
from streamapp.kibana.objects import (
    DEFAULT_ALERTS_INDEX,
    DEFAULT_NEWS_INDEX,
    DEFAULT_TWEETS_INDEX,
    check_fields,
    dangling_references,
    field_uses,
    flatten_mapping,
    kql_fields,
    load_objects,
    rewrite_index_names,
)
from streamapp.settings import Settings
from streamapp.sinks.elasticsearch import ElasticsearchSink
from streamapp.sinks.mappings import NEWS_PROPERTIES, TWEET_PROPERTIES

OBJECTS = load_objects()


def by_type(kind: str) -> list[dict[str, Any]]:
    return [o for o in OBJECTS if o["type"] == kind]


def declared_mappings() -> dict[str, dict[str, str]]:
    """The mappings as declared in mappings.py, under the default index names."""
    return {
        DEFAULT_TWEETS_INDEX: flatten_mapping(TWEET_PROPERTIES),
        DEFAULT_NEWS_INDEX: flatten_mapping(NEWS_PROPERTIES),
        DEFAULT_ALERTS_INDEX: flatten_mapping(ALERTS_MAPPING["properties"]),
    }


# -- the file itself -----------------------------------------------------------------------


def test_objects_are_complete_and_references_resolve() -> None:
    keys = [(o["type"], o["id"]) for o in OBJECTS]
    assert len(keys) == len(set(keys)), "duplicate type/id"
    assert dangling_references(OBJECTS) == []
    for obj in OBJECTS:
        # Kibana 8.x export fields: without them the import runs every migration from 7.x on
        # Lens' formBased state, which predates it.
        assert obj["coreMigrationVersion"] == "8.8.0", obj["id"]
        assert obj["typeMigrationVersion"], obj["id"]
        assert obj["id"].startswith("streamapp-"), "stable, readable ids so re-import overwrites"

    titles = {o["attributes"]["title"] for o in by_type("index-pattern")}
    assert {DEFAULT_TWEETS_INDEX, DEFAULT_NEWS_INDEX, DEFAULT_ALERTS_INDEX} <= titles

    for lens in by_type("lens"):
        refs = {r["name"] for r in lens["references"]}
        layers = lens["attributes"]["state"]["datasourceStates"]["formBased"]["layers"]
        assert layers, lens["id"]
        for layer_id, layer in layers.items():
            assert f"indexpattern-datasource-layer-{layer_id}" in refs, lens["id"]
            assert sorted(layer["columnOrder"]) == sorted(layer["columns"]), lens["id"]
            for col in layer["columns"].values():
                for ref in col.get("references", []):
                    assert ref in layer["columns"], f"{lens['id']}: column ref {ref}"
        vis = lens["attributes"]["state"]["visualization"]
        for vlayer in vis.get("layers", [vis]):
            accessors = [vlayer.get("xAccessor"), vlayer.get("splitAccessor")]
            accessors += [*vlayer.get("accessors", []), vlayer.get("metricAccessor")]
            for acc in filter(None, accessors):
                assert acc in layers[vlayer["layerId"]]["columns"], f"{lens['id']}: {acc}"

    (dashboard,) = by_type("dashboard")
    assert dashboard["attributes"]["title"] == "streamapp — sentiment and hate speech"
    panels = json.loads(dashboard["attributes"]["panelsJSON"])
    panel_refs = {r["name"]: (r["type"], r["id"]) for r in dashboard["references"]}
    on_dashboard = set()
    for panel in panels:
        ref = panel_refs[f"{panel['panelIndex']}:{panel['panelRefName']}"]
        assert ref[0] == panel["type"]
        on_dashboard.add(ref)
    # Every chart and the saved search are on the dashboard.
    charts = {(o["type"], o["id"]) for o in OBJECTS if o["type"] in ("lens", "search")}
    assert on_dashboard == charts

    search, alerts = by_type("search")
    assert alerts["attributes"]["title"] == "spike alerts"
    assert {"kind", "source", "term", "rate"} <= set(alerts["attributes"]["columns"])
    assert search["attributes"]["title"] == "latest hateful messages"
    source = json.loads(search["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
    assert source["query"] == {"query": "hate:true", "language": "kuery"}
    assert search["attributes"]["sort"][0][1] == "desc"


def test_kql_field_extraction() -> None:
    query = 'hate:true and not source : "a: b" or (sentiment_score >= 0.5 and lang:en)'
    assert kql_fields(query) == [
        ("hate", "kql boolean"),
        ("source", "kql"),
        ("sentiment_score", "kql"),
        ("lang", "kql"),
    ]


def test_rewrite_points_data_views_at_configured_indices() -> None:
    rewritten = rewrite_index_names(OBJECTS, "tw-x", "nw-y", "al-z")
    titles = {o["id"]: o["attributes"]["title"] for o in rewritten if o["type"] == "index-pattern"}
    names = {DEFAULT_TWEETS_INDEX: "tw-x", DEFAULT_NEWS_INDEX: "nw-y", DEFAULT_ALERTS_INDEX: "al-z"}
    for view in by_type("index-pattern"):
        parts = view["attributes"]["title"].split(",")
        expected = [names[p] for p in parts]
        assert titles[view["id"]] == ",".join(expected)
    assert load_objects() == OBJECTS, "the loaded objects must not be modified"


# -- the checker ---------------------------------------------------------------------------


def test_checker_sees_every_object_and_every_kind_of_use() -> None:
    uses = field_uses(OBJECTS)
    users = {u.obj for u in uses}
    assert users == {f"{o['type']} {o['id']}" for o in OBJECTS if o["type"] != "dashboard"}
    kinds = {u.use for u in uses}
    # Time fields, histograms, metrics, terms, a formula's KQL, panel queries, Discover columns.
    assert {"time field", "date_histogram", "average", "percentile", "terms"} <= kinds
    assert {"kql boolean", "column", "sort"} <= kinds
    assert any(u.where.endswith("filter") and u.field == "hate" for u in uses), "formula filter"
    assert check_fields(OBJECTS, declared_mappings()) == []


@pytest.mark.parametrize(
    ("index", "field", "change", "expect"),
    [
        (DEFAULT_TWEETS_INDEX, "sentiment_score", None, "'sentiment_score': no such field"),
        (DEFAULT_NEWS_INDEX, "source_name", "text", "terms needs"),
        (DEFAULT_TWEETS_INDEX, "created_at", "keyword", "time field needs date"),
        (DEFAULT_TWEETS_INDEX, "hate", "keyword", "conflicting types"),
        (DEFAULT_TWEETS_INDEX, "author_username", None, "'author_username': no such field"),
    ],
)
def test_checker_reports_a_mapping_change(
    index: str, field: str, change: str | None, expect: str
) -> None:
    mappings = copy.deepcopy(declared_mappings())
    if change is None:
        # Removed from both indices where present, so no data view still finds it.
        for fields in mappings.values():
            fields.pop(field, None)
    else:
        mappings[index][field] = change
    problems = check_fields(OBJECTS, mappings)
    assert any(expect in p and repr(field) in p for p in problems), problems


# -- against the real mapping --------------------------------------------------------------


@pytest.mark.integration
async def test_fields_exist_in_the_mapping_the_sink_creates(
    app_settings: Settings, es_sink: ElasticsearchSink
) -> None:
    settings = app_settings
    # The alerts index as the alert check creates it, under this test's own name.
    alerts_index = f"{settings.tweets_index}-alerts"
    await ensure_alerts_index(es_sink.client, alerts_index)
    try:
        mappings = {}
        for alias in (settings.tweets_index, settings.news_index, alerts_index):
            resp = (await es_sink.client.indices.get_mapping(index=alias)).body
            fields: dict[str, str] = {}
            for index in resp.values():  # keyed by the concrete index behind the alias
                fields.update(flatten_mapping(index["mappings"]["properties"]))
            mappings[alias] = fields
    finally:
        await es_sink.client.indices.delete(index=alerts_index)
    objects = rewrite_index_names(OBJECTS, settings.tweets_index, settings.news_index, alerts_index)
    assert check_fields(objects, mappings) == []
    # The declared mappings say the same as the live ones (so the unit checks above are
    # about the real thing).
    assert mappings == {
        settings.tweets_index: declared_mappings()[DEFAULT_TWEETS_INDEX],
        settings.news_index: declared_mappings()[DEFAULT_NEWS_INDEX],
        alerts_index: declared_mappings()[DEFAULT_ALERTS_INDEX],
    }
