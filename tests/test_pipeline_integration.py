"""End to end against the real Kafka broker and the real Elasticsearch node."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
import urllib.request
from urllib.parse import quote

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from helpers import (
    Namespace,
    consume_all,
    es_breakdown,
    es_count,
    make_articles,
    make_tweets,
    produce,
    total,
    view_totals,
    wait_for,
)

from devstack.elasticsearch import ElasticsearchService
from streamapp.models import article_id

pytestmark = pytest.mark.integration


def scrape(url: str) -> tuple[str, str]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.headers["Content-Type"], resp.read().decode()


def assert_tables_match_documents(worker, ns: Namespace, n: int) -> None:
    """The tumbling tables' totals equal N and split exactly as the indexed documents do."""
    es_sentiment, es_hate = es_breakdown(ns)

    def settled(view: str, label: str | None, expected: dict) -> bool:
        return total(view_totals(worker, view), label) == n

    try:
        wait_for(lambda: settled("sentiment", None, es_sentiment), timeout=30, what="sentiment")
        wait_for(lambda: settled("hate", "messages", es_hate), timeout=30, what="hate")
    except AssertionError:
        pass  # the comparison below shows the figures
    assert view_totals(worker, "sentiment") == es_sentiment
    assert view_totals(worker, "hate") == es_hate


def wait_received(worker, n: int, timeout: float = 60) -> None:
    """Until the tweets pipeline has taken `n` records (documents may be fewer: repeats)."""
    wait_for(
        lambda: worker.get("/stats/")[1]["pipelines"]["tweets"]["received"] == n,
        timeout=timeout,
        what=f"all {n} records processed",
    )


def assert_term_and_language_counts_match_documents(worker, ns: Namespace, terms) -> None:
    """Per tracked term and per language, the views count what the documents say: the
    documents' `terms` as the worker matched them, their `lang`."""
    by_term = {}
    for term in terms:
        es_sentiment, es_hate = es_breakdown(ns, {"term": {"terms": term}})
        status, sentiment = worker.get(f"/sentiment/?term={quote(term.upper())}&limit=10000")
        assert status == 200 and sentiment["term"] == term
        assert sentiment["totals"] == es_sentiment, term
        assert worker.get(f"/hate/?term={quote(term)}&limit=10000")[1]["totals"] == es_hate
        by_term[term] = total(es_hate, "messages")
    # Tags (politics, sports) and text (furious) both match.
    assert by_term["politics"] > 200 and by_term["sports"] > 200 and by_term["furious"] > 10
    assert by_term["no such word"] == 0
    status, body = worker.get("/hate/")
    assert {t: body["term_totals"][t].get("messages", 0) for t in terms} == by_term
    # The tweets say en; the articles' languages are detected (und: not detected).
    assert "en" in body["known_languages"]
    messages = 0
    for lang in body["known_languages"]:
        query = (
            {"term": {"lang": lang}}
            if lang != "und"
            else {"bool": {"must_not": {"exists": {"field": "lang"}}}}
        )
        status, by_lang = worker.get(f"/hate/?lang={lang}&limit=10000")
        assert status == 200 and by_lang["totals"] == es_breakdown(ns, query)[1], lang
        messages += total(by_lang["totals"], "messages")
    assert messages == total(body["totals"], "messages")  # the languages sum to the total
    assert worker.get("/hate/?term=untracked")[0] == 400


async def test_n_messages_end_to_end(namespace: Namespace, worker_factory) -> None:
    ns = namespace
    # Two terms the sample's rule tags carry, one its texts say, one nothing says.
    terms = ["politics", "sports", "furious", "no such word"]
    worker = worker_factory(STREAMAPP_TERMS=",".join(terms)).start()
    tweets = make_tweets(1000, seed=1)
    articles = make_articles(200, seed=1)
    n = len(tweets) + len(articles)

    started = time.monotonic()
    await asyncio.gather(
        produce(ns.cfg.kafka_bootstrap, ns.tweets_topic, tweets),
        produce(
            ns.cfg.kafka_bootstrap,
            ns.news_topic,
            [(url, json.dumps(a).encode()) for url, a in articles],
        ),
    )
    wait_for(lambda: es_count(ns) == n, timeout=120, what=f"{n} documents", interval=0.2)
    elapsed = time.monotonic() - started
    print(
        f"\nFIGURE end-to-end: {n} messages produced, classified and indexed in {elapsed:.2f}s "
        f"= {n / elapsed:.0f} msg/s (2 cores, shared machine)"
    )

    es = ns.es()
    try:
        ids = set()
        for index, count in (
            (ns.env["STREAMAPP_TWEETS_INDEX"], 1000),
            (ns.env["STREAMAPP_NEWS_INDEX"], 200),
        ):
            resp = es.search(index=index, size=2000, query={"match_all": {}})
            hits = resp["hits"]["hits"]
            assert len(hits) == count
            for hit in hits:
                doc = hit["_source"]
                assert hit["_id"] == doc["id"]
                assert doc["sentiment_label"] in {"negative", "neutral", "positive"}
                assert -1.0 <= doc["sentiment_score"] <= 1.0
                assert isinstance(doc["hate"], bool)
                assert 0.0 <= doc["hate_score"] <= 1.0
                assert isinstance(doc["hate_categories"], list)
                assert doc["classifier"] == "offline" and doc["classifier_version"]
                assert doc["processed_at"]
                ids.add(hit["_id"])
    finally:
        es.close()
    assert ids == {k for k, _ in tweets} | {article_id(url) for url, _ in articles}
    assert_tables_match_documents(worker, ns, n)

    # The hopping windows overlap, but one of them covers the whole (sub-minute) burst.
    status, body = worker.get("/hate/?window=hopping&limit=100")
    assert status == 200
    assert max(total(w["counts"], "messages") for w in body["windows"]) == n
    status, body = worker.get("/sentiment/?source=twitter")
    assert status == 200 and set(body["totals"]) == {"twitter"}
    assert body["known_sources"] == ["bluesky", "newsapi", "twitter"]
    assert worker.get("/sentiment/?window=sliding")[0] == 400
    assert_term_and_language_counts_match_documents(worker, ns, terms)
    # Consistent answers: without the slash a view redirects (query kept), like /dashboard;
    # an unknown page is a JSON 404 listing the pages; Faust's own pages still answer.
    status, body = worker.get("/hate?window=hopping")
    assert status == 200 and body["window"]["kind"] == "hopping"
    status, body = worker.get("/no/such/page")
    assert status == 404 and "/sentiment/" in body["pages"]
    assert worker.get("/router/")[0] == 200
    # Prometheus scrapes each worker: its own figures, in the text format. (The tables
    # count a batch before its changelog writes are confirmed, the stats after: wait.)
    wait_for(
        lambda: worker.get("/stats/")[1]["pipelines"]["tweets"]["indexed"] == 1000,
        timeout=30,
        what="the last batch confirmed",
    )
    content_type, metrics = await asyncio.to_thread(scrape, worker.web + "/metrics")
    assert content_type.startswith("text/plain")
    assert f'streamapp_messages_indexed_total{{topic="{ns.tweets_topic}"}} 1000.0' in metrics
    assert f'streamapp_messages_indexed_total{{topic="{ns.news_topic}"}} 200.0' in metrics
    assert "streamapp_batch_seconds_bucket" in metrics and "streamapp_consumer_lag" in metrics
    # `faust -A streamapp worker` runs on uvloop (streamapp/eventloop.py): this start's banner
    # (the log file keeps earlier runs' too).
    banners = re.findall(r"^\| transport +\| .*$", worker.log_text(), re.M)
    assert banners and "+uvloop" in banners[-1], banners[-1:]


async def test_sigkill_mid_stream_loses_and_duplicates_nothing(
    namespace: Namespace, worker_factory
) -> None:
    ns = namespace
    # Small batches, a steady producer and rare commits: the kill lands mid-stream with
    # indexed-and-counted messages whose offsets were never committed, so they come again.
    slow_commits = {
        "STREAMAPP_BATCH_SIZE": "50",
        "STREAMAPP_BATCH_TIMEOUT": "0.2",
        "STREAMAPP_COMMIT_INTERVAL": "30",
    }
    first = worker_factory(**slow_commits).start()
    tweets = make_tweets(3000, seed=2)
    n = len(tweets)
    producing = asyncio.create_task(
        produce(ns.cfg.kafka_bootstrap, ns.tweets_topic, tweets, rate=400)
    )
    await asyncio.to_thread(
        wait_for, lambda: es_count(ns) >= 600, timeout=120, what="some documents before the kill"
    )
    first.kill()
    killed_at = es_count(ns)
    print(f"\nFIGURE SIGKILL after {killed_at} of {n} documents were indexed")
    assert killed_at < n, "the kill should land mid-stream"
    second = worker_factory(**slow_commits).start()
    await producing
    await asyncio.to_thread(wait_for, lambda: es_count(ns) == n, timeout=180, what=f"{n} documents")
    await asyncio.sleep(3)  # anything redelivered late would show up as extra counts
    assert es_count(ns) == n
    stats = second.get("/stats/")[1]
    redelivered = stats["pipelines"]["tweets"]["received"] + killed_at - n
    print(f"FIGURE {redelivered} or more messages were delivered a second time after the kill")
    print(f"FIGURE offset sequencing after the restart: {stats['offsets']}")
    assert redelivered > 0, "the restart should have seen already-indexed messages again"
    # Redelivered messages were re-indexed (same ids) but must not be counted twice.
    await asyncio.to_thread(assert_tables_match_documents, second, ns, n)


async def test_bad_messages_go_to_the_dead_letter_topic(
    namespace: Namespace, worker_factory
) -> None:
    ns = namespace
    worker = worker_factory(STREAMAPP_MAX_MESSAGE_BYTES="4096").start()
    good = make_tweets(200, seed=3)
    valid = json.loads(good[0][1])
    bad: dict[str, bytes] = {
        "invalid_json": b'{"id": "x1", "text": "unterminated',
        "not_utf8": b"\xff\xfe\x00garbage",
        "not_object": b'["a", "list"]',
        "oversized": json.dumps({**valid, "id": "big", "text": "x" * 5000}).encode(),
        "missing_text": json.dumps(
            {k: v for k, v in valid.items() if k != "text"} | {"id": "m1"}
        ).encode(),
        "null_text": json.dumps({**valid, "id": "n1", "text": None}).encode(),
        "wrong_type": json.dumps({**valid, "id": "w1", "rule_tags": "not-a-list"}).encode(),
        "bad_date": json.dumps({**valid, "id": "d1", "created_at": "yesterday"}).encode(),
        # Passes our schema; Elasticsearch refuses ids over 512 bytes.
        "rejected_by_es": json.dumps({**valid, "id": "L" * 600}).encode(),
    }
    expected_reason = {
        "invalid_json": "invalid_json",
        "not_utf8": "invalid_json",
        "not_object": "invalid_json",
        "oversized": "oversized",
        "missing_text": "schema_violation",
        "null_text": "schema_violation",
        "wrong_type": "schema_violation",
        "bad_date": "schema_violation",
        "rejected_by_es": "rejected_by_elasticsearch",
    }
    messages: list[tuple[str, bytes]] = []
    bad_items = list(bad.items())
    for i, item in enumerate(good):
        messages.append(item)
        if i % 20 == 0 and bad_items:
            name, raw = bad_items.pop()
            messages.append((f"bad-{name}", raw))
    assert not bad_items
    await produce(ns.cfg.kafka_bootstrap, ns.tweets_topic, messages)

    letters = await consume_all(ns.cfg.kafka_bootstrap, ns.dead_letter_topic, expected=len(bad))
    assert len(letters) == len(bad)
    by_key = {}
    for record in letters:
        letter = json.loads(record.value)
        original = base64.b64decode(letter["value_b64"])
        assert letter["topic"] == ns.tweets_topic and letter["error"]
        assert letter["size"] == len(original)
        by_key[letter["key"]] = (letter, original)
    for name, raw in bad.items():
        letter, original = by_key[f"bad-{name}"]
        assert original == raw, name
        assert letter["reason"] == expected_reason[name], (name, letter)
    assert "512" in by_key["bad-rejected_by_es"][0]["error"]
    assert "text" in by_key["bad-missing_text"][0]["error"]

    await asyncio.to_thread(
        wait_for, lambda: es_count(ns) == len(good), timeout=60, what="good documents"
    )
    _status, stats = worker.get("/stats/")
    assert stats["pipelines"]["tweets"]["dead_lettered"] == len(bad)
    assert worker.alive()
    await asyncio.to_thread(assert_tables_match_documents, worker, ns, len(good))


async def test_elasticsearch_outage_backpressure_then_recovery(
    namespace: Namespace, worker_factory
) -> None:
    ns = namespace
    es_service = ElasticsearchService(ns.cfg)
    worker = worker_factory().start()
    before = make_tweets(300, seed=4, prefix="before")
    await produce(ns.cfg.kafka_bootstrap, ns.tweets_topic, before)
    await asyncio.to_thread(
        wait_for, lambda: es_count(ns) == 300, timeout=60, what="first 300 documents"
    )

    es_service.stop()
    try:
        during = make_tweets(500, seed=4, prefix="during")
        await produce(ns.cfg.kafka_bootstrap, ns.tweets_topic, during)
        # The worker keeps running, reports itself degraded and retries.
        await asyncio.to_thread(
            wait_for,
            lambda: worker.get("/health/")[0] == 503,
            timeout=60,
            what="/health/ to report the outage",
        )
        await asyncio.sleep(5)
        _status, health = worker.get("/health/")
        assert health["status"] == "degraded" and not health["elasticsearch_reachable"]
        assert health["elasticsearch"]["retries"] > 0
        assert health["pipelines"]["tweets"]["indexed"] == 300
        assert worker.alive()
    finally:
        es_service.start()
    n = 800
    await asyncio.to_thread(wait_for, lambda: es_count(ns) == n, timeout=180, what=f"{n} documents")
    await asyncio.to_thread(worker.wait_healthy)
    await asyncio.to_thread(assert_tables_match_documents, worker, ns, n)


async def test_a_message_sent_twice_is_indexed_and_counted_once(
    namespace: Namespace, worker_factory
) -> None:
    ns = namespace
    worker = worker_factory().start()
    first = make_tweets(50, seed=21)
    await produce(ns.cfg.kafka_bootstrap, ns.tweets_topic, first)
    wait_for(lambda: es_count(ns) == 50, timeout=60, what="50 documents")
    # A producer retry or a source re-reading after a restart: the same ids again, as new
    # Kafka records, plus 10 new messages.
    second = first[:20] + make_tweets(10, seed=22)
    await produce(ns.cfg.kafka_bootstrap, ns.tweets_topic, second)
    wait_received(worker, 80)
    assert es_count(ns) == 60
    assert_tables_match_documents(worker, ns, 60)
    assert worker.get("/stats/")[1]["pipelines"]["tweets"]["repeats"] == 20
    es = ns.es()
    try:
        doc = es.get(index=ns.env["STREAMAPP_TWEETS_INDEX"], id=first[0][0])["_source"]
    finally:
        es.close()
    # The document now points at the later record (the newest write wins).
    assert doc["kafka_topic"] == ns.tweets_topic and doc["kafka_offset"] is not None


async def test_across_a_rollover_a_message_sent_twice_is_indexed_and_counted_once(
    namespace: Namespace, worker_factory
) -> None:
    """The worker rolls its index over (40 documents, checked every second) between a
    message and its repeat: still one document per id and one count per message."""
    ns = namespace
    worker = worker_factory(
        STREAMAPP_INDEX_ROLLOVER_DOCS="40", STREAMAPP_RETENTION_INTERVAL="1"
    ).start()
    alias = ns.env["STREAMAPP_TWEETS_INDEX"]
    es = ns.es()
    try:
        first = make_tweets(50, seed=31)
        await produce(ns.cfg.kafka_bootstrap, ns.tweets_topic, first)
        wait_for(lambda: es_count(ns) == 50, timeout=60, what="50 documents")
        indices = wait_for(
            lambda: len(body := es.indices.get_alias(name=alias).body) == 2 and body,
            timeout=30,
            what="the rollover",
        )
        new = next(i for i, b in indices.items() if b["aliases"][alias]["is_write_index"])
        second = first[:20] + make_tweets(10, seed=32)
        await produce(ns.cfg.kafka_bootstrap, ns.tweets_topic, second)
        wait_received(worker, 80)
        assert es_count(ns) == 60
        hits = es.search(index=alias, size=200, source=False)["hits"]["hits"]
        by_index: dict[str, set[str]] = {}
        for hit in hits:
            by_index.setdefault(hit["_index"], set()).add(hit["_id"])
        repeated = {tweet_id for tweet_id, _ in first[:20]}
        assert repeated <= by_index[new] and len(by_index[new]) == 30, by_index
        assert sum(map(len, by_index.values())) == 60
        assert worker.get("/stats/")[1]["pipelines"]["tweets"]["repeats"] == 20
        assert_tables_match_documents(worker, ns, 60)
    finally:
        es.close()


async def test_a_changelog_repaired_while_the_worker_runs_is_used_within_seconds(
    namespace: Namespace, worker_factory
) -> None:
    """A table's changelog topic with too few partitions (a misconfiguration, or the state a
    changelog created just before the group joined is seen in: no partitions yet) fails
    every table write with `PartitionsMismatch`, and the batch waits. Once the topic is
    right the worker must use it at once: Faust's view of it is a metadata snapshot that is
    otherwise renewed only every 5 minutes, and the batch waited that long."""
    ns = namespace
    changelog = f"{ns.env['STREAMAPP_APP_ID']}-hate-counts-hopping-changelog"
    admin = AIOKafkaAdminClient(bootstrap_servers=ns.cfg.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(changelog, 1, 1)])
        worker = worker_factory().start()
        await produce(ns.cfg.kafka_bootstrap, ns.tweets_topic, make_tweets(40, seed=31))

        def mismatch() -> bool:
            error = worker.get("/stats/")[1]["pipelines"]["tweets"]["last_error"] or ""
            return error.startswith("PartitionsMismatch")

        wait_for(mismatch, timeout=60, what="the batch to wait on the changelog")
        assert worker.get("/stats/")[1]["pipelines"]["tweets"]["received"] == 0
        await admin.create_partitions({changelog: NewPartitions(total_count=4)})
    finally:
        await admin.close()
    # Seconds here; without the refresh, a minute or more (Faust's rebalance timing out on
    # the waiting batch) up to the 5 minutes of the metadata's renewal.
    wait_received(worker, 40, timeout=30)
    assert es_count(ns) == 40
    assert_tables_match_documents(worker, ns, 40)
