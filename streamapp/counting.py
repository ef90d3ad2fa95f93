"""Exactly-once counts over at-least-once delivery: the pure core (no Faust, no I/O).

The project's main promise is that the windowed tables count every distinct message once,
whatever Kafka redelivers. Everything that decides *what* is counted lives here, so it can be
tested directly; `tables.py` only stores the values in Faust tables.

How
---
After a crash Kafka redelivers the messages after the last committed offset, some of which
were already counted. Counts are therefore kept per *source partition*: one key per source and
input partition (`source|topic|partition`) and window, whose value holds every label's count,
overall and per *facet* (each language, each tracked term), with the highest source offset
counted:

    {"o": 1234, "c": {"|negative": 7, "lang=en|negative": 5, "term=climate|negative": 2, ...}}

Counts and watermark travel in one changelog message, so whichever value survived a crash,
redelivered messages at or below its watermark are skipped and the rest are counted
(`merge`). Keys are per partition for a second reason: a table partition is owned by the
worker that owns the same source partition, so no two workers write a key. Readers sum over
partitions.

One key holds all of a message's labels and facets because every table key costs a changelog
record per batch: a key per label and facet made the tables the worker's largest cost (`make
bench`). A value holds labels x (1 + languages + terms) counts; terms and languages are not
crossed, which keeps it small (a term's counts per language would multiply them).

Two further rules keep counts equal to the number of distinct messages:

* the same message sent twice as two Kafka records (a producer retry, a source re-reading
  after a restart) is one document in Elasticsearch and is counted once (`is_repeat`): the
  document records the Kafka position it was indexed from;
* within one batch the last record of an id wins, as it would in Elasticsearch
  (`last_per_id`).

Values written by versions before this layout (`{"n", "o"}` under `source|label|topic|
partition`) are still read, as totals, until their windows expire.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain
from typing import Any, NamedTuple, Protocol, TypeVar

MESSAGES_LABEL = "messages"  # hate tables: every message, so counts can be checked against N
HATEFUL_LABEL = "hateful"  # hate tables: messages flagged hateful
KEY_SEP = "|"
#: The language of a message whose language is not known.
UNKNOWN_LANGUAGE = "und"

#: A stored value: `{"o": highest source offset counted, "c": {"facet|label": count}}`.
CountValue = dict[str, Any]
Window = tuple[float, float]
TableKey = tuple[str, Window]
#: Every window (start, end) a timestamp falls in.
WindowRanges = Callable[[float], Iterable[Sequence[float]]]


@dataclass(frozen=True)
class Position:
    """Where a message was read from."""

    topic: str
    partition: int
    offset: int

    @property
    def tp(self) -> tuple[str, int]:
        return (self.topic, self.partition)


@dataclass(frozen=True, slots=True)
class Count:
    """One message to count: its `cells` (`"facet|label"`) each go up by one."""

    source: str
    topic: str
    partition: int
    offset: int
    timestamp: float
    cells: tuple[str, ...]

    @property
    def key(self) -> str:
        return KEY_SEP.join((self.source, self.topic, str(self.partition)))


class KeyParts(NamedTuple):
    source: str
    topic: str
    partition: int


def split_key(key: str) -> KeyParts:
    """The fields of a table key (no field holds the separator: decoding enforces the
    sources' pattern)."""
    source, topic, partition = key.split(KEY_SEP)
    return KeyParts(source, topic, int(partition))


def facet(*, term: str = "", lang: str = "") -> str:
    """The facet of a term or a language ("" with neither: all messages). Terms never hold
    the separator (settings refuse it), languages are codes."""
    if term and lang:
        raise ValueError("a facet is one term or one language, not both")
    return f"term={term}" if term else f"lang={lang}" if lang else ""


def cell(facet_name: str, label: str) -> str:
    return f"{facet_name}{KEY_SEP}{label}"


def split_cell(name: str) -> tuple[str, str]:
    """`(facet, label)` of a cell."""
    facet_name, _, label = name.partition(KEY_SEP)
    return facet_name, label


def is_legacy(value: Mapping[str, Any]) -> bool:
    """A value of the layout before this one: `{"n", "o"}` under `source|label|topic|part`."""
    return "c" not in value


def cells_of(key: str, value: Mapping[str, Any]) -> tuple[str, Mapping[str, int]]:
    """`(source, {cell: count})` of a stored item, whatever its layout."""
    if is_legacy(value):
        source, label, _topic, _partition = key.split(KEY_SEP)
        return source, {cell("", label): int(value["n"])}
    return split_key(key).source, value["c"]


# -- what a document counts as ----------------------------------------------------------


def sentiment_labels(doc: Mapping[str, Any]) -> list[str]:
    return [str(doc["sentiment_label"])]


def hate_labels(doc: Mapping[str, Any]) -> list[str]:
    """Every message counts under `messages`, hateful ones under `hateful` and under each of
    their categories."""
    labels = [MESSAGES_LABEL]
    if doc["hate"]:
        labels.append(HATEFUL_LABEL)
    labels.extend(str(c) for c in doc.get("hate_categories") or ())
    return labels


def counts_for(
    doc: Mapping[str, Any], at: Position, timestamp: float, labels: Iterable[str]
) -> list[Count]:
    """What `doc` adds: each label, overall, in its language (`und` when not known) and under
    each of its tracked terms."""
    cells = _cells(*_facets_of(doc), tuple(labels))
    return [Count(str(doc["source"]), at.topic, at.partition, at.offset, timestamp, cells)]


def _facets_of(doc: Mapping[str, Any]) -> tuple[str, tuple[str, ...]]:
    """`(language, terms)` of a document: what its cells are counted under besides overall."""
    return str(doc.get("lang") or UNKNOWN_LANGUAGE), tuple(str(t) for t in doc.get("terms") or ())


@lru_cache(maxsize=4096)
def _cells(lang: str, terms: tuple[str, ...], labels: tuple[str, ...]) -> tuple[str, ...]:
    # Most messages of a stream share their language, terms and labels: cached, the cells
    # are not formatted again for each (twice per message, one of counting's larger costs).
    facets = ["", facet(lang=lang), *(facet(term=t) for t in terms)]
    return tuple(cell(f, label) for label in labels for f in facets)


# -- which documents count ----------------------------------------------------------------

T = TypeVar("T")


def last_per_id(items: Iterable[T], id_of: Callable[[T], Hashable]) -> list[T]:
    """One item per id, the last one, in the order the last occurrences arrived."""
    out: dict[Hashable, T] = {}
    for item in items:
        key = id_of(item)
        out.pop(key, None)
        out[key] = item
    return list(out.values())


def is_repeat(previous: Sequence[object] | None, at: Position) -> bool:
    """True when the id was indexed before from a different Kafka record.

    `previous` is the (topic, partition, offset) stored with the existing document, None when
    there is none. A redelivery of the same record is not a repeat: the watermarks decide
    whether it was counted before.
    """
    if previous is None or previous[0] is None:
        # New, or indexed before positions were recorded: counted as before.
        return False
    return tuple(previous) != (at.topic, at.partition, at.offset)


@dataclass
class BatchCounts:
    """What one batch adds to the sentiment and the hate tables."""

    sentiment: list[Count]
    hate: list[Count]
    counted: int
    repeats: int


def batch_counts(
    indexed: Iterable[tuple[Mapping[str, Any], Position, float]],
    previous: Mapping[str, Sequence[object] | None],
) -> BatchCounts:
    """Counts for the documents of a batch that Elasticsearch accepted (rejected ones are
    dead-lettered, not counted), `(document, position, timestamp)` each; `previous` maps an
    id to the position the document this batch replaced had been indexed from."""
    out = BatchCounts([], [], 0, 0)
    sentiment, hate = out.sentiment.append, out.hate.append
    for doc, at, timestamp in indexed:
        if is_repeat(previous.get(doc["id"]), at):
            out.repeats += 1
            continue
        out.counted += 1
        # `counts_for` twice, with the document's fields read once (per message: ~2x).
        lang, terms = _facets_of(doc)
        source, topic, partition, offset = str(doc["source"]), at.topic, at.partition, at.offset
        cells = _cells(lang, terms, tuple(sentiment_labels(doc)))
        sentiment(Count(source, topic, partition, offset, timestamp, cells))
        labels = _hate_labels(bool(doc["hate"]), tuple(doc.get("hate_categories") or ()))
        hate(Count(source, topic, partition, offset, timestamp, _cells(lang, terms, labels)))
    return out


@lru_cache(maxsize=1024)
def _hate_labels(hate: bool, categories: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(hate_labels({"hate": hate, "hate_categories": categories}))


# -- the watermark merge --------------------------------------------------------------------


def merge(
    current: Mapping[str, Any] | None, entries: Iterable[tuple[int, Sequence[str]]]
) -> CountValue | None:
    """The new value of a key after counting the messages `entries` (`(offset, cells)`), or
    None when every one is at or below the stored watermark (counted before)."""
    watermark = int(current["o"]) if current else -1
    fresh = [(o, cells) for o, cells in entries if o > watermark]
    if not fresh:
        return None
    # Counter.update counts an iterable in C (batches go through `merge_slots`, which
    # counts a slot once for all its windows; this is the path of redeliveries).
    counts = Counter(current["c"]) if current else Counter()
    counts.update(chain.from_iterable(cells for _offset, cells in fresh))
    return {"o": max(o for o, _ in fresh), "c": dict(counts)}


Entries = list[tuple[int, Sequence[str]]]


def shared_step(step: float) -> float | None:
    """The `step` to give `plan` for a Faust window of this step: Faust's `ranges` works in
    whole seconds (`int()` of the start, the timestamp and the step), so its windows depend
    only on `timestamp // step` when the step is whole, and on more otherwise (None)."""
    return step if float(step).is_integer() else None


class Slot:
    """The messages of one key whose timestamps share their windows (a batch's messages
    mostly do): their cells are counted once and added to each window, instead of once per
    window (a hopping window of five steps holds each message five times)."""

    __slots__ = ("_counts", "entries", "first", "last")

    def __init__(self) -> None:
        self.entries: Entries = []
        self.first = -1  # lowest offset
        self.last = -1  # highest offset
        self._counts: Counter[str] | None = None

    def add(self, offset: int, cells: Sequence[str]) -> None:
        if not self.entries or offset < self.first:
            self.first = offset
        self.last = max(self.last, offset)
        self.entries.append((offset, cells))

    def counts(self) -> Counter[str]:
        if self._counts is None:
            self._counts = Counter(chain.from_iterable(cells for _offset, cells in self.entries))
        return self._counts


def plan(
    counts: Iterable[Count], ranges: WindowRanges, step: float | None = None
) -> dict[tuple[str, int], dict[TableKey, list[Slot]]]:
    """Group a batch's counts as writes: per source partition, the slots of messages to
    merge into each (key, window). With `step`, the windows of a timestamp depend only on
    `timestamp // step` (see `shared_step`), and so do the slots."""
    out: dict[tuple[str, int], dict[TableKey, list[Slot]]] = defaultdict(lambda: defaultdict(list))
    # Worked out once per timestamp, or per step: most of a batch shares its windows.
    windows_at: dict[float, list[Window]] = {}
    slots: dict[tuple[str, float], Slot] = {}
    for c in counts:
        at = c.timestamp if step is None else c.timestamp // step
        key = c.key
        slot = slots.get((key, at))
        if slot is None:
            windows = windows_at.get(at)
            if windows is None:
                windows = windows_at[at] = [(r[0], r[1]) for r in ranges(c.timestamp)]
            slot = slots[(key, at)] = Slot()
            writes = out[(c.topic, c.partition)]
            for window in windows:
                writes[(key, window)].append(slot)
        slot.add(c.offset, c.cells)
    return out


def merge_slots(
    current: Mapping[str, Any] | None, slots: Sequence[Slot]
) -> tuple[CountValue | None, int]:
    """`merge` of the slots' messages, and how many of them were newly counted."""
    watermark = int(current["o"]) if current else -1
    if all(s.first > watermark for s in slots):  # nothing counted before: the usual case
        counts = Counter(current["c"]) if current else Counter()
        for s in slots:
            counts.update(s.counts())
        new: CountValue = {"o": max(s.last for s in slots), "c": dict(counts)}
        return new, sum(len(s.entries) for s in slots)
    entries = [e for s in slots for e in s.entries]
    return merge(current, entries), sum(1 for o, _ in entries if o > watermark)


class CountStore(Protocol):
    """Where counts live. Reads and writes of one source partition happen inside
    `partition(topic, partition)`: a Faust table stores and changelogs a key in the partition
    of the event being processed, which batch processing has to set."""

    def partition(self, topic: str, partition: int) -> AbstractContextManager[None]: ...

    def get(self, key: TableKey) -> Mapping[str, Any] | None: ...

    def set(self, key: TableKey, value: CountValue) -> None: ...


def apply_counts(
    store: CountStore, counts: Iterable[Count], ranges: WindowRanges, step: float | None = None
) -> int:
    """Merge a batch into `store`, one write per key; return the messages newly counted,
    window by window (those at or below a watermark are skipped). `step` as in `plan`."""
    applied = 0
    for (topic, partition), writes in plan(counts, ranges, step).items():
        with store.partition(topic, partition):
            for key, slots in writes.items():
                # Never a value of the old layout: its keys have four fields, these three.
                new, fresh = merge_slots(store.get(key), slots)
                if new is None:
                    continue
                applied += fresh
                store.set(key, new)
    return applied


Items = Iterable[tuple[TableKey, Mapping[str, Any]]]


def summarise(
    items: Items, source: str | None = None, *, term: str = "", lang: str = ""
) -> dict[Window, dict[str, dict[str, int]]]:
    """`{window: {source: {label: count}}}` of all messages, one tracked `term` or one
    `lang`, summed over partitions."""
    wanted = facet(term=term, lang=lang)
    out: dict[Window, dict[str, dict[str, int]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(int))
    )
    for (key, window), value in items:
        src, cells = cells_of(key, value)
        if source is not None and src != source:
            continue
        labels = out[(window[0], window[1])][src]
        for name, n in cells.items():
            facet_name, label = split_cell(name)
            if facet_name == wanted:
                labels[label] += int(n)
    return out


class Known(NamedTuple):
    sources: set[str]
    terms: set[str]
    languages: set[str]


def known_values(items: Items) -> Known:
    """The sources, terms and languages that have counts in `items`."""
    sources: set[str] = set()
    names: set[str] = set()
    for (key, _window), value in items:
        source, cells = cells_of(key, value)
        sources.add(source)
        names.update(split_cell(name)[0] for name in cells)
    terms = {n.removeprefix("term=") for n in names if n.startswith("term=")}
    langs = {n.removeprefix("lang=") for n in names if n.startswith("lang=")}
    return Known(sources, terms, langs)


class MemoryCountStore:
    """A plain dict as a CountStore: what the Faust tables do, minus persistence."""

    def __init__(self) -> None:
        self.values: dict[TableKey, CountValue] = {}
        self.scope: tuple[str, int] | None = None

    @contextmanager
    def partition(self, topic: str, partition: int) -> Iterator[None]:
        self.scope = (topic, partition)
        try:
            yield
        finally:
            self.scope = None

    def get(self, key: TableKey) -> Mapping[str, Any] | None:
        return self.values.get(key)

    def set(self, key: TableKey, value: CountValue) -> None:
        if self.scope is None:
            raise RuntimeError("write outside a partition scope")
        self.values[key] = dict(value)

    def items(self) -> Iterator[tuple[TableKey, Mapping[str, Any]]]:
        return iter(list(self.values.items()))
