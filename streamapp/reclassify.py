"""Re-classify stored documents with the current model, into a new index behind the alias.

    python -m streamapp.reclassify tweets|news [--since ISO] [--until ISO] [--batch-size 500]

Documents keep the labels of the model that classified them (`classifier_version` says
which). After a model change this copies each index behind the alias (one per rollover, see
`streamapp.retention`; the write index last) into a new one, re-classifying the documents
processed in `[since, until)` (all of them by default) with the configured backend and copying
the others as they are, then swaps the copy for the original in the alias in one atomic step.
Indices with nothing processed in the range are left as they are. The worker keeps running
throughout: what it writes meanwhile is copied too (the copy follows `processed_at`, so
documents written during the copy come last), and after the switch a last pass copies what
reached the old index before the switch without overwriting what the worker has already
written to the new one. An index the alias rolls over to during the run is the worker's,
classified by the model it runs, and is not copied.

Resumable: progress is saved after every batch in a state file (`STREAMAPP_DATA_DIR`); run the
same command again after an interruption and it continues where it stopped. The old indices
are kept (the command prints how to delete them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from elasticsearch import AsyncElasticsearch

from streamapp.classifiers import create_classifier
from streamapp.classifiers.routing import Router
from streamapp.models import _strip_truncation
from streamapp.settings import Settings, load_settings
from streamapp.sinks.elasticsearch import make_client
from streamapp.sinks.indices import copy_name, newest_first, write_index_of

SORT = [{"processed_at": {"order": "asc"}}, {"id": {"order": "asc"}}]


@dataclass
class State:
    """What a run has done so far; saved after every batch."""

    alias: str
    source: str  # the index being copied now ...
    target: str  # ... and its copy
    since: str | None
    until: str | None
    phase: str = "copy"  # copy -> catch-up -> (the next of `queue`, or) done
    queue: list[str] = field(default_factory=list)  # indices still to copy, in order
    replaced: list[list[str]] = field(default_factory=list)  # [source, target] pairs done
    after: list[Any] | None = None  # sort values of the last document copied
    copied: int = 0
    reclassified: int = 0
    total_at_start: int = 0
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        tmp.replace(path)  # never a half-written state

    @classmethod
    def load(cls, path: Path) -> State | None:
        return cls(**json.loads(path.read_text())) if path.is_file() else None


def text_of(doc: dict[str, Any]) -> str:
    """What the worker classified: a post's text, an article's title, description and
    content (as `models.NewsArticle.classification_text`)."""
    if "title" in doc:
        parts = [
            doc.get("title"),
            doc.get("description"),
            _strip_truncation(doc.get("content") or ""),
        ]
        return "\n".join(p for p in parts if p)
    return str(doc.get("text") or "")


def in_range(doc: dict[str, Any], since: datetime | None, until: datetime | None) -> bool:
    processed = datetime.fromisoformat(doc["processed_at"])
    return (since is None or processed >= since) and (until is None or processed < until)


class Reclassifier:
    def __init__(
        self,
        client: AsyncElasticsearch,
        classifier: Router,
        state: State,
        state_path: Path,
        batch_size: int = 500,
        progress: Any = sys.stderr,
    ) -> None:
        self.client = client
        self.classifier = classifier
        self.state = state
        self.state_path = state_path
        self.batch_size = batch_size
        self.progress = progress
        self._since = _instant(state.since)
        self._until = _instant(state.until)
        self._started = time.monotonic()
        self._copied_here = 0

    async def run(self, max_batches: int | None = None) -> State:
        """Run (or resume) to the end; `max_batches` stops early, as an interruption would."""
        s = self.state
        if not await self.client.indices.exists(index=s.target):
            # The alias's index template gives it the same mapping and settings.
            await self.client.indices.create(index=s.target)
        batches = 0
        while s.phase != "done":
            if max_batches is not None and batches >= max_batches:
                return s
            copied = await self._batch(overwrite=s.phase == "copy")
            batches += 1
            if copied == 0 and s.phase == "copy":
                await self._switch_alias()
                s.phase = "catch-up"
                s.save(self.state_path)
            elif copied == 0:
                self._line(final=True)
                s.replaced.append([s.source, s.target])
                if s.queue:
                    s.source = s.queue.pop(0)
                    s.target = copy_name(s.source, s.started_at)
                    s.phase, s.after = "copy", None
                    if not await self.client.indices.exists(index=s.target):
                        await self.client.indices.create(index=s.target)
                else:
                    s.phase = "done"
                s.save(self.state_path)
        return s

    async def _batch(self, overwrite: bool) -> int:
        s = self.state
        if not overwrite:
            # The old index gets no more writes: what it holds is all there is to catch up.
            await self.client.indices.refresh(index=s.source)
        resp = await self.client.search(
            index=s.source,
            sort=SORT,
            size=self.batch_size,
            search_after=s.after,
            query={"match_all": {}},
        )
        hits = resp["hits"]["hits"]
        if not hits:
            return 0
        docs = [hit["_source"] for hit in hits]
        chosen = [i for i, d in enumerate(docs) if in_range(d, self._since, self._until)]
        if chosen:
            analyses = await self.classifier.classify(
                [text_of(docs[i]) for i in chosen], [docs[i].get("lang") for i in chosen]
            )
            for i, analysis in zip(chosen, analyses, strict=True):
                # The analysis fields (`models.ANALYSIS_FIELDS`, each of them) are replaced;
                # the rest of the document stays as it is.
                docs[i].update(analysis.asdict())
        operations: list[dict[str, Any]] = []
        for doc in docs:
            # After the switch the worker writes to the new index: never overwrite its newer
            # copy of a document with the old index's.
            op = "index" if overwrite else "create"
            operations += [{op: {"_index": s.target, "_id": doc["id"]}}, doc]
        resp = await self.client.bulk(operations=operations)
        for item in resp["items"]:
            result = next(iter(item.values()))
            if result.get("status", 500) >= 300 and result.get("status") != 409:
                raise RuntimeError(f"bulk into {s.target} refused {result}")
        s.after = hits[-1]["sort"]
        s.copied += len(docs)
        s.reclassified += len(chosen)
        self._copied_here += len(docs)
        s.save(self.state_path)
        self._line()
        return len(docs)

    async def _switch_alias(self) -> None:
        s = self.state
        current = (await self.client.indices.get_alias(name=s.alias)).body
        if s.target in current and s.source not in current:
            return  # switched before an interruption that came before the state was saved
        # Read now, not at the start: the alias may have rolled over to a newer index since.
        writes = write_index_of(current, s.alias) == s.source
        await self.client.indices.update_aliases(
            actions=[
                {"add": {"index": s.target, "alias": s.alias, "is_write_index": writes}},
                {"remove": {"index": s.source, "alias": s.alias}},
            ]
        )

    def _line(self, final: bool = False) -> None:
        s = self.state
        rate = self._copied_here / max(time.monotonic() - self._started, 1e-6)
        share = f" of ~{s.total_at_start:,}" if s.total_at_start else ""
        self.progress.write(
            f"\r{s.source} {s.phase}: {s.copied:,}{share} copied, "
            f"{s.reclassified:,} re-classified, "
            f"{rate:,.0f} docs/s" + ("\n" if final else "")
        )
        self.progress.flush()


def _instant(raw: str | None) -> datetime | None:
    if raw is None:
        return None
    value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def start_state(
    client: AsyncElasticsearch, alias: str, since: str | None, until: str | None
) -> State:
    aliases = (await client.indices.get_alias(name=alias)).body
    write = write_index_of(aliases, alias)
    if write is None:
        raise SystemExit(f"alias {alias} has no write index")
    # Oldest first, the write index last: what the worker still writes to is copied last.
    sources = newest_first(aliases, write)[::-1]
    if since or until:
        sources = await _touching(client, alias, sources, _instant(since), _instant(until))
        if not sources:
            raise SystemExit(f"nothing in {alias} was processed in that range")
    total = int((await client.count(index=",".join(sources)))["count"])
    state = State(alias, sources[0], "", since, until, queue=sources[1:], total_at_start=total)
    state.target = copy_name(state.source, state.started_at)
    return state


async def _touching(
    client: AsyncElasticsearch,
    alias: str,
    indices: list[str],
    since: datetime | None,
    until: datetime | None,
) -> list[str]:
    """The indices of `indices` holding a document processed in `[since, until)`."""
    bounds: dict[str, Any] = {}
    if since is not None:
        bounds["gte"] = since.isoformat()
    if until is not None:
        bounds["lt"] = until.isoformat()
    resp = await client.search(
        index=alias,
        size=0,
        query={"range": {"processed_at": bounds}},
        aggs={"by_index": {"terms": {"field": "_index", "size": max(len(indices), 1)}}},
    )
    hit = {b["key"] for b in resp["aggregations"]["by_index"]["buckets"]}
    return [i for i in indices if i in hit]


async def reclassify(
    settings: Settings,
    kind: str,
    since: str | None = None,
    until: str | None = None,
    batch_size: int = 500,
    state_path: Path | None = None,
    max_batches: int | None = None,
    progress: Any = sys.stderr,
) -> State:
    alias = settings.tweets_index if kind == "tweets" else settings.news_index
    state_path = state_path or settings.data_dir / f"reclassify-{alias}.json"
    state_path.parent.mkdir(parents=True, exist_ok=True)
    client = make_client(settings)
    # As the worker routes: languages a backend does not support go to the offline model.
    primary = create_classifier(settings.backend_for(kind))
    offline = primary if primary.name == "offline" else create_classifier("offline")
    for clf in {primary, offline}:
        await clf.start()
    router = Router(
        primary, offline, mode=settings.classifier_fallback, languages=settings.language_set
    )
    try:
        state = State.load(state_path)
        if state is None or state.phase == "done":
            state = await start_state(client, alias, since, until)
            state.save(state_path)
        elif (since, until) != (state.since, state.until) and (since or until):
            raise SystemExit(
                f"{state_path} holds an unfinished run for [{state.since}, {state.until}): "
                "run without --since/--until to resume it, or delete the file to start over"
            )
        done = await Reclassifier(client, router, state, state_path, batch_size, progress).run(
            max_batches
        )
        if done.phase == "done":
            old = ",".join(source for source, _ in done.replaced)
            new = ", ".join(target for _, target in done.replaced)
            progress.write(
                f"{alias} now points at {new} instead of {old}; the old indices are kept "
                f"(delete them with: curl -XDELETE {settings.elasticsearch_url}/{old})\n"
            )
        return done
    finally:
        for clf in {primary, offline}:
            await clf.close()
        await client.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["tweets", "news"])
    parser.add_argument("--since", help="re-classify documents processed at or after (ISO 8601)")
    parser.add_argument("--until", help="... and before (ISO 8601)")
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args(argv)
    for value in (args.since, args.until):
        if value is not None:
            try:
                _instant(value)
            except ValueError:
                parser.error(f"not an ISO 8601 time: {value!r}")
    asyncio.run(reclassify(load_settings(), args.kind, args.since, args.until, args.batch_size))


if __name__ == "__main__":
    main()
