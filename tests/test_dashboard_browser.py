"""The dashboard in a real headless Chromium, against a worker on the real Kafka and
Elasticsearch: its figures are the web views' figures, and it follows new data without a
reload.

Chromium is Debian's (`make system-deps` installs it); Playwright only drives it and never
downloads a browser of its own.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import pytest
from helpers import ARTIFACTS, Namespace, Worker, make_tweets, produce, total, view_totals
from playwright.async_api import Page, async_playwright

pytestmark = pytest.mark.integration

SCREENSHOT = ARTIFACTS / "dashboard.png"


def chromium_path() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail(
            "Debian's `chromium` is not on PATH: run `make system-deps` (it installs it). "
            "Playwright must not download a browser of its own.",
            pytrace=False,
        )
    return path


async def eventually(
    check: Callable[[], Awaitable[Any]], *, within: float, what: str, interval: float = 0.5
) -> Any:
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {within:.0f}s waiting for {what} (last: {last!r})")


async def page_totals(page: Page, view: str) -> dict[str, dict[str, int]]:
    """{source: {label: n}} as the page's totals table shows it (zeros left out, as the
    views leave them out)."""
    cells = await page.locator(f'#totals-table td[data-view="{view}"]').evaluate_all(
        "cells => cells.map(c => [c.dataset.source, c.dataset.label, c.dataset.value])"
    )
    out: dict[str, dict[str, int]] = {}
    for source, label, value in cells:
        if source != "*" and int(value):
            out.setdefault(source, {})[label] = int(value)
    return out


async def totals_match(page: Page, worker: Worker, expected_messages: int) -> tuple | None:
    """Page and views agree, and the views have counted every message produced."""
    views = {v: await asyncio.to_thread(view_totals, worker, v) for v in ("sentiment", "hate")}
    shown = {v: await page_totals(page, v) for v in ("sentiment", "hate")}
    messages = await page.get_attribute("#kpi-messages", "data-value")
    if (
        total(views["hate"], "messages") == expected_messages
        and shown == views
        and int(messages or 0) == expected_messages
    ):
        return views, shown
    return None


def fetch(worker: Worker, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(worker.web + path, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp
    except urllib.error.HTTPError as exc:
        return exc.code, exc


def check_static_files(worker: Worker) -> None:
    """Content types, caching and path traversal on the real server (aiohttp decodes and
    normalises paths before the view sees them, so this is where it matters)."""
    status, resp = fetch(worker, "/dashboard/")
    assert status == 200
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    assert resp.headers["Cache-Control"] == "no-cache"
    assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
    etag = resp.headers["ETag"]
    assert fetch(worker, "/dashboard/", {"If-None-Match": etag})[0] == 304

    status, resp = fetch(worker, "/dashboard/static/dashboard.js")
    assert status == 200
    assert resp.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Cache-Control"] == "no-cache"
    version = resp.headers["ETag"].strip('"')
    status, resp = fetch(worker, f"/dashboard/static/dashboard.js?v={version}")
    assert "immutable" in resp.headers["Cache-Control"]
    assert fetch(worker, "/dashboard/static/dashboard.css")[1].headers["Content-Type"] == (
        "text/css; charset=utf-8"
    )
    for path in (
        "/dashboard/static/%2e%2e/dashboard.py",
        "/dashboard/static/..%2f__init__.py",
        "/dashboard/static/%2e%2e%2f%2e%2e%2fpyproject.toml",
        "/dashboard/static/%2fetc%2fpasswd",
        "/dashboard/static/.hidden.js",
        "/dashboard/static/missing.js",
    ):
        assert fetch(worker, path)[0] == 404, path

    for bad in ("hate=maybe", "limit=0", "limit=101", "limit=x", "source=a%20b", "sort=asc"):
        status, resp = fetch(worker, f"/recent/?{bad}")
        assert status == 400, bad


async def check_terms(page: Page, worker: Worker, terms: list[str]) -> None:
    """The tracked-terms panel shows each term's counts as the views report them; picking a
    term (and a language) charts its messages alone, and picking "all" goes back."""
    sentiment = (await asyncio.to_thread(worker.get, "/sentiment/"))[1]
    hate = (await asyncio.to_thread(worker.get, "/hate/"))[1]
    expected = {
        term: {
            "messages": hate["term_totals"][term].get("messages", 0),
            "negative": sentiment["term_totals"][term].get("negative", 0),
            "positive": sentiment["term_totals"][term].get("positive", 0),
            "hateful": hate["term_totals"][term].get("hateful", 0),
        }
        for term in terms
    }
    assert all(expected[t]["messages"] for t in terms), expected

    async def panel() -> dict[str, dict[str, int]] | None:
        cells = await page.eval_on_selector_all(
            "#terms-table td[data-kind]",
            "cells => cells.map(c => [c.closest('tr').dataset.term, c.dataset.kind, "
            "c.dataset.value])",
        )
        shown: dict[str, dict[str, int]] = {}
        for term, kind, value in cells:
            if value is not None:
                shown.setdefault(term, {})[kind] = int(value)
        return shown if shown == expected else None

    await eventually(panel, within=20, what="the tracked terms compared")
    assert await page.is_hidden("#terms-empty")

    # A term, another term, then a language (which clears the term: not crossed).
    for select, value in (("term", "sports"), ("term", "politics"), ("lang", "en")):
        query = f"{select}={value}"
        want = {
            v: (await asyncio.to_thread(worker.get, f"/{v}/?{query}&limit=10000"))[1]["totals"]
            for v in ("sentiment", "hate")
        }
        assert 0 < total(want["hate"], "messages") <= total(hate["totals"], "messages")
        await page.select_option(f"#{select}-select", value)

        async def charted(want: dict = want) -> bool:
            return {v: await page_totals(page, v) for v in ("sentiment", "hate")} == want

        await eventually(charted, within=20, what=f"the totals of {query}")
    assert await page.input_value("#term-select") == ""
    await page.select_option("#lang-select", "")


async def test_dashboard_shows_live_totals(namespace: Namespace, worker_factory) -> None:
    ns = namespace
    executable = chromium_path()
    worker = worker_factory(STREAMAPP_TERMS="politics,sports,furious").start()
    await asyncio.to_thread(check_static_files, worker)

    first = make_tweets(200, seed=11)
    await produce(ns.cfg.kafka_bootstrap, ns.tweets_topic, first)

    errors: list[str] = []
    navigations: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=executable)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(30_000)
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on(
                "framenavigated",
                lambda f: navigations.append(f.url) if f == page.main_frame else None,
            )
            started = time.monotonic()
            await page.goto(worker.web + "/")
            assert page.url == worker.web + "/dashboard/"

            _, shown = await eventually(
                lambda: totals_match(page, worker, len(first)),
                within=90,
                what=f"the page to show the views' totals of {len(first)} messages",
            )
            took = time.monotonic() - started
            print(f"\nFIGURE the dashboard showed {len(first)} messages {took:.1f}s after opening")
            assert total(shown["sentiment"]) == len(first)

            await check_terms(page, worker, ["politics", "sports", "furious"])

            # Recent hateful messages: whatever /recent/ answers, the page lists; and it
            # answers with what Elasticsearch holds as hateful, newest first. The tables can
            # count a batch up to a refresh interval (1 s) before it is searchable: refresh.
            es = ns.es()
            try:
                es.indices.refresh(index=ns.indices)
            finally:
                es.close()
            status, recent = await asyncio.to_thread(worker.get, "/recent/?hate=true&limit=20")
            assert status == 200, recent
            assert recent["items"], "the sample tweets include hateful ones; none were listed"
            assert all(item["hate"] for item in recent["items"])
            times = [datetime.fromisoformat(item["time"]) for item in recent["items"]]
            assert times == sorted(times, reverse=True)
            es = ns.es()
            try:
                es.indices.refresh(index=ns.indices)
                hateful = es.count(index=ns.indices, query={"term": {"hate": True}})["count"]
            finally:
                es.close()
            assert len(recent["items"]) == min(20, hateful)
            expected_ids = [item["id"] for item in recent["items"]]

            async def listed() -> list[str | None] | None:
                rows = page.locator("#recent-hateful tbody tr")
                ids = [await r.get_attribute("data-id") for r in await rows.all()]
                return ids if ids == expected_ids else None

            await eventually(listed, within=20, what="the recent hateful messages listed")

            # The search box: words of a listed message, then negative ones only; the page
            # shows what /recent/ answers for the same search.
            word = max(re.findall(r"[A-Za-z]{4,}", recent["items"][0]["text"]), key=len)
            page_errors: list[str] = []
            page.on("pageerror", lambda exc: page_errors.append(str(exc)))
            for sentiment in ("", "negative"):
                query = f"q={word}&limit=20" + (f"&sentiment={sentiment}" if sentiment else "")
                status, found = await asyncio.to_thread(worker.get, f"/recent/?{query}")
                assert status == 200 and found["total"]["value"] >= len(found["items"]), found
                if not sentiment:  # the message the word came from matches, at least
                    assert found["items"], found
                assert all(word.lower() in item["text"].lower() for item in found["items"])
                assert all(item["sentiment"] == sentiment for item in found["items"] if sentiment)
                await page.fill("#search-q", word)
                await page.select_option("#search-sentiment", sentiment)
                await page.click("#search button[type=submit]")
                found_ids = [item["id"] for item in found["items"]]

                async def searched(found_ids: list[str] = found_ids) -> dict[str, object] | None:
                    assert not page_errors, page_errors
                    # One read of the whole table: a render may replace its rows meanwhile.
                    ids = await page.eval_on_selector_all(
                        "#search-results tbody tr", "rows => rows.map(r => r.dataset.id)"
                    )
                    empty = await page.is_visible("#search-empty")
                    done = ids == found_ids and empty == (not found_ids)
                    return {"ids": ids, "empty": empty} if done else None

                await eventually(searched, within=20, what=f"the search {query!r} listed")

            # Hate per window: the hateful bar and each category side by side, never stacked
            # (a message can carry several categories, so a stack would overstate the
            # flagged messages); its height is the hateful count the key figures show.
            bars = await page.eval_on_selector_all(
                "#hate-chart rect[data-key]",
                """els => els.map(e => ({key: e.dataset.key, x: +e.getAttribute('x'),
                    bottom: +e.getAttribute('y') + +e.getAttribute('height')}))""",
            )
            assert {b["key"] for b in bars} >= {"hateful", "hate_speech"}, bars
            assert len({round(b["bottom"], 3) for b in bars}) == 1, "bars share the baseline"
            assert len({b["x"] for b in bars}) == len(bars), "no two bars on top of each other"
            assert await page.is_hidden("#recent-empty")
            # Hateful text is blurred until the viewer asks to see it; the choice is kept.
            table_class = "#recent-hateful"
            assert "masked" in (await page.get_attribute(table_class, "class") or "")
            await page.check("#reveal-text")
            assert "masked" not in (await page.get_attribute(table_class, "class") or "")
            await page.uncheck("#reveal-text")
            assert "masked" in (await page.get_attribute(table_class, "class") or "")

            health_status = (await asyncio.to_thread(worker.get, "/health/"))[1]["status"]
            assert await page.get_attribute("#health-status", "data-status") == health_status
            dead = sum((await asyncio.to_thread(worker.get, "/stats/"))[1]["dead_letters"].values())
            assert int(await page.get_attribute("#kpi-dead-letters", "data-value") or -1) == dead
            assert await page.is_hidden("#error-banner")
            updated = await page.get_attribute("#last-updated", "data-epoch")

            # More messages: the open page catches up by itself.
            second = make_tweets(150, seed=12)
            await produce(ns.cfg.kafka_bootstrap, ns.tweets_topic, second)
            n = len(first) + len(second)
            _, shown = await eventually(
                lambda: totals_match(page, worker, n),
                within=90,
                what=f"the page to update to the views' totals of {n} messages",
            )
            assert navigations == [worker.web + "/dashboard/"], "the page was reloaded"
            assert await page.get_attribute("#last-updated", "data-epoch") != updated
            # Let the charts settle after the last poll before the picture is taken.
            await asyncio.sleep(2.5)
            await page.screenshot(path=str(SCREENSHOT), full_page=True)
            assert not errors, f"errors in the browser console: {errors}"

            # The worker goes away: the page says so, and stops claiming fresh figures.
            worker.stop()
            await page.wait_for_selector("#error-banner:not([hidden])", timeout=15_000)
            banner = await page.text_content("#error-banner") or ""
            assert "Cannot reach the worker" in banner
            assert await page.get_attribute("#health-status", "data-status") == "unreachable"
            updated = await page.get_attribute("#last-updated", "data-epoch")
            await asyncio.sleep(2.5)  # one more poll
            assert await page.get_attribute("#last-updated", "data-epoch") == updated
            assert await page.is_visible("#error-banner")
            await page.screenshot(path=str(ARTIFACTS / "dashboard-unreachable.png"))
        finally:
            await browser.close()
    print(f"FIGURE screenshot saved to {SCREENSHOT}")
