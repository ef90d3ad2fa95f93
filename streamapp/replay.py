"""Replay JSONL files of posts or articles into the input topics.

    python -m streamapp.replay FILE [FILE...] [--kind tweets|news] [--rate N] [--restamp]

Each line is one JSON object (a Tweet or NewsArticle record, or a raw NewsAPI article). The
topic comes from --kind or, by default, from the file name (`*news*` -> news, else tweets).
Lines that are not JSON objects or lack an id are reported with their line number and
skipped. Messages are keyed by their id; `--restamp` sets `created_at`/`published_at` to
the send time, so an old export lands in the current windows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

from aiokafka import AIOKafkaProducer

from streamapp.models import article_id
from streamapp.settings import Settings, load_settings
from streamapp.topics import ensure_topics


@dataclass
class ReplayResult:
    sent: int = 0
    skipped: int = 0


def sample_files() -> list[Path]:
    base = resources.files("streamapp") / "data"
    return [Path(str(base / name)) for name in ("sample_tweets.jsonl", "sample_news.jsonl")]


def kind_for(path: Path, forced: str | None) -> str:
    if forced:
        return forced
    return "news" if "news" in path.name.lower() else "tweets"


def read_lines(path: Path, kind: str, result: ReplayResult) -> Iterator[tuple[str, dict]]:
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                print(f"{path}:{lineno}: skipped, not JSON: {exc}", file=sys.stderr)
                result.skipped += 1
                continue
            if not isinstance(obj, dict):
                print(f"{path}:{lineno}: skipped, not a JSON object", file=sys.stderr)
                result.skipped += 1
                continue
            key = obj.get("id") or (
                article_id(obj["url"]) if kind == "news" and obj.get("url") else None
            )
            if not isinstance(key, str) or not key:
                print(f"{path}:{lineno}: skipped, no id (or url for news)", file=sys.stderr)
                result.skipped += 1
                continue
            yield key, obj


async def replay(
    files: list[Path],
    settings: Settings,
    *,
    kind: str | None = None,
    rate: float | None = None,
    restamp: bool = False,
    progress: bool = True,
) -> ReplayResult:
    await ensure_topics(settings)
    result = ReplayResult()
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.broker_urls, acks="all", linger_ms=5, enable_idempotence=True
    )
    await producer.start()
    started = time.monotonic()
    last_report = started
    try:
        pending = []
        for path in files:
            k = kind_for(path, kind)
            topic = settings.news_topic if k == "news" else settings.tweets_topic
            for key, obj in read_lines(path, k, result):
                if restamp:
                    stamp = datetime.now(UTC).isoformat()
                    if k == "tweets":
                        obj["created_at"] = stamp
                    elif "publishedAt" in obj:  # raw NewsAPI shape
                        obj["publishedAt"] = stamp
                    else:
                        obj["published_at"] = stamp
                pending.append(
                    await producer.send(topic, json.dumps(obj).encode(), key=key.encode())
                )
                result.sent += 1
                if rate:
                    # Pace against the start time, so pauses do not accumulate drift.
                    ahead = result.sent / rate - (time.monotonic() - started)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
                now = time.monotonic()
                if progress and now - last_report >= 1.0:
                    last_report = now
                    print(
                        f"\rsent {result.sent} ({result.sent / (now - started):.0f}/s)",
                        end="",
                        file=sys.stderr,
                    )
        await asyncio.gather(*pending)  # every message acknowledged by the broker
    finally:
        await producer.stop()
    if progress:
        elapsed = time.monotonic() - started
        print(
            f"\rsent {result.sent} messages in {elapsed:.1f}s, skipped {result.skipped} bad lines",
            file=sys.stderr,
        )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m streamapp.replay", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "files", nargs="*", type=Path, help="JSONL files (default: the bundled sample)"
    )
    parser.add_argument("--kind", choices=["tweets", "news"], help="topic for all files")
    parser.add_argument(
        "--rate", type=float, help="messages per second (default: as fast as possible)"
    )
    parser.add_argument("--restamp", action="store_true", help="set the timestamps to now")
    args = parser.parse_args(argv)
    files = args.files or sample_files()
    for path in files:
        if not path.is_file():
            parser.error(f"no such file: {path}")
    result = asyncio.run(
        replay(files, load_settings(), kind=args.kind, rate=args.rate, restamp=args.restamp)
    )
    return 0 if result.sent else 1


if __name__ == "__main__":
    sys.exit(main())
