"""Replay JSONL or CSV files of posts or articles into the input topics.

    python -m streamapp.sources replay FILE [FILE...] [--kind tweets|news] [--rate N] [--restamp]
                                       [--repeat]

JSONL: one JSON object per line (a Tweet or NewsArticle record, or a raw NewsAPI article).
CSV: a header row naming the record fields (`id,text,created_at,...`; list fields such as
`rule_tags` separated by `;`; empty cells are absent). The topic comes from --kind or, by
default, from the file name (`*news*` -> news, else tweets). Bad lines are reported with
their line number and skipped, never silently. Messages are keyed by their id; `--restamp`
sets `created_at`/`published_at` to the send time, so an old export lands in the current
windows. A progress bar shows while sending and a final count when done. This is also the
load generator of the benchmarks and the demo data of `make run`.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

from streamapp.decoding import DecodeFailure, decode
from streamapp.models import NewsArticle, Tweet, article_id
from streamapp.settings import Settings, load_settings
from streamapp.sources.base import RecordOutput, Source
from streamapp.sources.output import KafkaOutput
from streamapp.sources.runner import main_for
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


LIST_FIELDS = {"rule_tags"}


def count_lines(path: Path) -> int:
    """Data lines of a file (for the progress bar): the CSV header does not count."""
    with open(path, "rb") as fh:
        n = sum(1 for line in fh if line.strip())
    return n - 1 if path.suffix.lower() == ".csv" and n else n


Report = Callable[[str], None]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def _rows(path: Path, result: ReplayResult, report: Report) -> Iterator[tuple[int, dict]]:
    """(line number, object) for JSONL and CSV files; unreadable lines are reported."""

    def skip(lineno: int, why: str) -> None:
        report(f"{path}:{lineno}: skipped, {why}")
        result.skipped += 1

    with open(path, encoding="utf-8", newline="") as fh:
        if path.suffix.lower() == ".csv":
            reader = csv.DictReader(fh)
            for row in reader:
                if None in row:  # more cells than header columns
                    skip(reader.line_num, "too many cells")
                    continue
                obj: dict = {}
                for name, cell in row.items():
                    if cell is None or cell == "":
                        continue
                    obj[name] = [t for t in cell.split(";") if t] if name in LIST_FIELDS else cell
                yield reader.line_num, obj
            return
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                parsed = json.loads(line)
            except (ValueError, RecursionError) as exc:
                skip(lineno, f"not JSON: {exc}")
                continue
            if not isinstance(parsed, dict):
                skip(lineno, "not a JSON object")
                continue
            yield lineno, parsed


def read_lines(
    path: Path,
    kind: str,
    result: ReplayResult,
    report: Report = _stderr,
    max_bytes: int = 256 * 1024,
) -> Iterator[tuple[str, dict]]:
    """(key, object) of each line the worker would accept, checked with the worker's own
    decoder; every other line is reported with its number and counted as skipped."""
    model = NewsArticle if kind == "news" else Tweet
    for lineno, obj in _rows(path, result, report):
        key = obj.get("id") or (
            article_id(obj["url"]) if kind == "news" and isinstance(obj.get("url"), str) else None
        )
        if not isinstance(key, str) or not key:
            report(f"{path}:{lineno}: skipped, no id (or url for news)")
            result.skipped += 1
            continue
        checked = decode(json.dumps(obj).encode(), model, max_bytes=max_bytes)
        if isinstance(checked, DecodeFailure):
            report(f"{path}:{lineno}: skipped, {checked.reason}: {checked.error}")
            result.skipped += 1
            continue
        yield key, obj


class Progress:
    """A one-line progress bar on stderr, redrawn at most twice a second."""

    def __init__(self, total: int | None, enabled: bool) -> None:
        self.total = total
        self.enabled = enabled
        self.started = time.monotonic()
        self._last = 0.0
        self._line = ""

    def update(self, done: int, *, force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self._last < 0.5):
            return
        self._last = now
        rate = done / max(now - self.started, 1e-9)
        if self.total:
            frac = min(done / self.total, 1.0)
            bar = "#" * int(frac * 30)
            line = f"[{bar:<30}] {frac:4.0%} {done}/{self.total} {rate:.0f}/s"
        else:
            line = f"sent {done} ({rate:.0f}/s)"
        self._line = line
        print(f"\r{line}", end="", file=sys.stderr, flush=True)

    def report(self, message: str) -> None:
        """A line of its own above the bar (never run into it)."""
        if not self.enabled or not self._line:
            print(message, file=sys.stderr)
            return
        print(f"\r{' ' * len(self._line)}\r{message}", file=sys.stderr)
        print(self._line, end="", file=sys.stderr, flush=True)


class ReplaySource(Source):
    """Sends the lines of files to the input topics as they are (the worker validates them
    and dead-letters what is wrong), optionally paced and re-stamped."""

    name = "replay"

    def __init__(
        self,
        files: list[Path],
        *,
        kind: str | None = None,
        rate: float | None = None,
        restamp: bool = False,
        progress: bool = True,
        max_bytes: int = 256 * 1024,
        loop: bool = False,
    ) -> None:
        self.files = files
        # Send the files again and again until stopped (a demo that stays live); from the
        # second pass on, ids get a `~<pass>` suffix: the same ids would be repeats, indexed
        # over the first pass's documents and not counted again.
        self.loop = loop
        self.max_bytes = max_bytes  # the worker's STREAMAPP_MAX_MESSAGE_BYTES
        self.kind = kind
        self.rate = rate
        self.restamp = restamp
        self.progress = progress
        self.result = ReplayResult()
        self._stop = asyncio.Event()

    async def run(self, out: RecordOutput) -> None:
        result = self.result
        started = time.monotonic()
        total = None if self.loop else sum(count_lines(p) for p in self.files)
        bar = Progress(total if self.progress else None, self.progress)
        passes = 0
        while not self._stop.is_set():
            passes += 1
            await self._send_files(out, passes, bar, started)
            if not self.loop:
                break
        await out.flush()  # every message acknowledged by the broker
        bar.update(result.sent + result.skipped, force=True)
        if self.progress:
            elapsed = time.monotonic() - started
            print(
                f"\nsent {result.sent} messages in {elapsed:.1f}s, "
                f"skipped {result.skipped} bad lines",
                file=sys.stderr,
            )

    async def _send_files(
        self, out: RecordOutput, passes: int, bar: Progress, started: float
    ) -> None:
        result = self.result
        for path in self.files:
            k = kind_for(path, self.kind)
            for key, obj in read_lines(path, k, result, bar.report, self.max_bytes):
                if self._stop.is_set():
                    return
                if passes > 1:
                    if k == "news" and not obj.get("id"):
                        # An article's id comes from its URL (the NewsAPI shape has no id).
                        obj["url"] = f"{obj['url']}#~{passes}"
                        key = article_id(obj["url"])
                    else:
                        key = obj["id"] = f"{key}~{passes}"
                if self.restamp:
                    stamp = datetime.now(UTC).isoformat()
                    if k == "tweets":
                        obj["created_at"] = stamp
                    elif "publishedAt" in obj:  # raw NewsAPI shape
                        obj["publishedAt"] = stamp
                    else:
                        obj["published_at"] = stamp
                await out.send_json(k, key, obj)
                result.sent += 1
                if self.rate:
                    # Pace against the start time, so pauses do not accumulate drift.
                    ahead = result.sent / self.rate - (time.monotonic() - started)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
                bar.update(result.sent + result.skipped)

    def stop(self) -> None:
        self._stop.set()

    def counters(self) -> dict[str, int]:
        return {"sent": self.result.sent, "skipped": self.result.skipped}


async def replay(
    files: list[Path],
    settings: Settings,
    *,
    kind: str | None = None,
    rate: float | None = None,
    restamp: bool = False,
    progress: bool = True,
) -> ReplayResult:
    """Replay `files` with a Kafka output of its own (for scripts and benchmarks)."""
    await ensure_topics(settings)
    source = ReplaySource(
        files,
        kind=kind,
        rate=rate,
        restamp=restamp,
        progress=progress,
        max_bytes=settings.max_message_bytes,
    )
    out = KafkaOutput(settings)
    await out.start()
    try:
        await source.run(out)
    finally:
        await out.stop()
    return source.result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m streamapp.sources replay", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "files", nargs="*", type=Path, help="JSONL or CSV files (default: the bundled sample)"
    )
    parser.add_argument("--kind", choices=["tweets", "news"], help="topic for all files")
    parser.add_argument(
        "--rate", type=float, help="messages per second (default: as fast as possible)"
    )
    parser.add_argument("--restamp", action="store_true", help="set the timestamps to now")
    # Not `--loop`: importing Faust reads `--loop`/`-L` from sys.argv, whatever the command,
    # and takes the next argument as the name of an event loop to install.
    parser.add_argument(
        "--repeat",
        action="store_true",
        help="send the files again and again until stopped, with new ids each pass "
        "(needs --rate; with --restamp, a demo that keeps the dashboard's windows filling)",
    )
    args = parser.parse_args(argv)
    if args.repeat and not args.rate:
        parser.error("--repeat needs --rate (messages per second)")
    files = args.files or sample_files()
    for path in files:
        if not path.is_file():
            parser.error(f"no such file: {path}")
    made: list[ReplaySource] = []

    def build() -> ReplaySource:
        made.append(
            ReplaySource(
                files,
                kind=args.kind,
                rate=args.rate,
                restamp=args.restamp,
                max_bytes=load_settings().max_message_bytes,
                loop=args.repeat,
            )
        )
        return made[0]

    code = main_for("replay", build, settings_error=str)
    return code or (0 if made and made[0].result.sent else 1)


if __name__ == "__main__":
    sys.exit(main())
