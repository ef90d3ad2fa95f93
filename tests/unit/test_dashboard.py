"""The dashboard's static file handling and the /recent/ view's parameters (no server)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from streamapp.dashboard import (
    CSP,
    IMMUTABLE,
    REVALIDATE,
    STATIC_DIR,
    BadRequest,
    load_static,
    parse_recent_query,
    recent_item,
    recent_search,
    render_index,
    resolve_static,
    static_headers,
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    static = tmp_path / "static"
    (static / "sub").mkdir(parents=True)
    (static / "app.js").write_text("console.log(1);\n")
    (static / "sub" / "style.css").write_text("body {}\n")
    (static / ".secret.js").write_text("hidden\n")
    (static / "notes.md").write_text("not a served type\n")
    (tmp_path / "outside.js").write_text("outside\n")
    os.symlink(tmp_path / "outside.js", static / "link.js")
    return static


def test_serves_files_under_the_root_with_their_content_type(root: Path) -> None:
    js = load_static(root, "app.js")
    assert js is not None and js.body == b"console.log(1);\n"
    assert js.content_type == "text/javascript; charset=utf-8"
    css = load_static(root, "sub/style.css")
    assert css is not None and css.content_type == "text/css; charset=utf-8"


@pytest.mark.parametrize(
    "name",
    [
        "../outside.js",
        "sub/../../outside.js",
        "sub/../app.js",  # even when it would stay inside: dot segments are never valid
        "./app.js",
        "/etc/passwd",
        "sub//style.css",
        "..\\outside.js",
        "app.js\x00.css",
        ".secret.js",
        "notes.md",
        "missing.js",
        "sub",
        "link.js",  # a symlink pointing out of the directory
        "",
    ],
)
def test_refuses_names_outside_the_root_hidden_or_unknown(root: Path, name: str) -> None:
    assert resolve_static(root, name) is None
    assert load_static(root, name) is None


def test_caching_headers_depend_on_the_version_in_the_url(root: Path) -> None:
    js = load_static(root, "app.js")
    assert js is not None
    plain = static_headers(js, {})
    assert plain["Cache-Control"] == REVALIDATE and plain["ETag"] == js.etag
    assert plain["X-Content-Type-Options"] == "nosniff"
    assert static_headers(js, {"v": js.version})["Cache-Control"] == IMMUTABLE
    assert static_headers(js, {"v": "stale"})["Cache-Control"] == REVALIDATE


def test_index_links_each_asset_by_its_content_hash() -> None:
    page = render_index(STATIC_DIR).body.decode()
    assert "{{static:" not in page
    for asset in ("dashboard.js", "dashboard.css", "favicon.svg"):
        file = load_static(STATIC_DIR, asset)
        assert file is not None
        assert f"static/{asset}?v={file.version}" in page
    # The page loads nothing from elsewhere, and its policy would refuse it if it tried.
    assert "http://" not in page and "https://" not in page
    assert "default-src 'none'" in CSP and "connect-src 'self'" in CSP


def test_recent_query_defaults_and_values() -> None:
    q = parse_recent_query({})
    assert (q.hate, q.limit, q.source) == (None, 20, None)
    q = parse_recent_query({"hate": "true", "limit": "5", "source": "twitter"})
    assert (q.hate, q.limit, q.source) == (True, 5, "twitter")
    assert parse_recent_query({"hate": "FALSE"}).hate is False


@pytest.mark.parametrize(
    "query",
    [
        {"hate": "yes"},
        {"hate": ""},
        {"limit": "0"},
        {"limit": "101"},
        {"limit": "ten"},
        {"source": "a b"},
        {"source": "x" * 65},
        {"order": "asc"},
        {"q": "x" * 201},
        {"sentiment": "angry"},
        {"lang": "en us"},
        {"from": "yesterday"},
        {"from": "2026-12-02T00:00:00Z", "to": "2026-12-01T00:00:00Z"},
        {"page": "0"},
        {"page": "101", "limit": "100"},
    ],
)
def test_recent_query_rejects_bad_parameters(query: dict[str, str]) -> None:
    with pytest.raises(BadRequest):
        parse_recent_query(query)


def test_recent_search_filters_and_sorts_newest_first() -> None:
    q = parse_recent_query({"hate": "true", "limit": "7", "source": "bluesky"})
    body = recent_search(q, ["a-tweets", "a-news"])
    assert body["index"] == "a-tweets,a-news"
    assert body["size"] == 7
    assert body["query"]["bool"]["filter"] == [
        {"term": {"hate": True}},
        {"term": {"source": "bluesky"}},
    ]
    assert body["sort"][0] == {"processed_at": {"order": "desc"}}
    assert recent_search(parse_recent_query({}), ["x"])["query"]["bool"]["filter"] == []
    # Bounded: a page of at most 100, never past the 10,000th hit, a 2 s search timeout.
    body = recent_search(
        parse_recent_query({"q": "vote", "page": "3", "limit": "50", "from": "2026-12-01"}),
        ["x"],
    )
    assert (body["from_"], body["size"], body["timeout"]) == (100, 50, "2s")
    assert body["query"]["bool"]["filter"] == [
        {"range": {"processed_at": {"gte": "2026-12-01T00:00:00+00:00"}}}
    ]
    assert body["query"]["bool"]["must"][0]["simple_query_string"]["query"] == "vote"


def test_recent_item_takes_text_or_title() -> None:
    tweet = recent_item(
        {
            "id": "t1",
            "source": "twitter",
            "text": "some text",
            "author_username": "alice",
            "hate": True,
            "hate_score": 0.9,
            "hate_categories": ["hate_speech"],
            "processed_at": "2026-01-01T00:00:00+00:00",
        }
    )
    assert (tweet["kind"], tweet["text"], tweet["author"]) == ("tweet", "some text", "alice")
    assert tweet["categories"] == ["hate_speech"] and tweet["score"] == 0.9
    news = recent_item({"id": "n1", "source": "newsapi", "title": "Headline", "source_name": "BBC"})
    assert (news["kind"], news["text"], news["author"]) == ("news", "Headline", "BBC")
    assert news["categories"] == []
