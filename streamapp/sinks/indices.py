"""The names and order of the indices behind a document alias (pure functions).

`<alias>-v<mapping version>` is the first index (`sinks.mappings.concrete_index`); a rollover
adds a generation, `<alias>-v1-000002`, and a re-classification copies an index to
`<name>-r<time>` (`streamapp.reclassify`). Used by the sink (where an id may already be
stored), by rollover and retention (`streamapp.retention`) and by re-classification.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

# `<alias>-v<mapping version>`, then the rollover generation (the first index has none), then
# a re-classification stamp (`copy_name`: re-classification copies an index to `<name>-r<time>`).
_STAMP = r"-r(?P<stamp>\d{14})"
_NAME = re.compile(rf"^(?P<base>.+?-v(?P<version>\d+))(?:-(?P<generation>\d{{6}}))?(?:{_STAMP})?$")
_STAMPED = re.compile(rf"{_STAMP}$")


def parse_index(name: str) -> tuple[str, int, int, str]:
    """`(base, mapping version, generation, re-classification stamp)` of an index name;
    a name the project did not make sorts before every one it did."""
    m = _NAME.match(name)
    if m is None:
        return name, 0, 0, ""
    return m["base"], int(m["version"]), int(m["generation"] or 1), m["stamp"] or ""


def newest_first(indices: Iterable[str], write_index: str | None = None) -> list[str]:
    """An alias's indices, the write index first, then by mapping version and generation,
    newest first (a re-classified copy takes its original's place)."""

    def key(name: str) -> tuple[bool, int, int, str]:
        _, version, generation, stamp = parse_index(name)
        return (name == write_index, version, generation, stamp)

    return sorted(indices, key=key, reverse=True)


def next_index(write_index: str, indices: Iterable[str]) -> str:
    """The name the write index rolls over to: its base with the generation after every one
    the alias holds (`x-v1` -> `x-v1-000002`; `x-v1-000002-r20261201120000` -> `x-v1-000003`)."""
    base = parse_index(write_index)[0]
    top = max(
        (parse_index(name)[2] for name in (write_index, *indices) if parse_index(name)[0] == base),
        default=1,
    )
    return f"{base}-{top + 1:06d}"


def write_index_of(aliases: dict[str, Any], alias: str) -> str | None:
    """The write index in a `GET <alias>/_alias` body (the only index when there is one and
    no flag, as Elasticsearch treats it)."""
    for index, body in aliases.items():
        if body["aliases"][alias].get("is_write_index", len(aliases) == 1):
            return str(index)
    return None


def chain_for(aliases: dict[str, Any], alias: str, depth: int) -> Sequence[str]:
    """The `depth` newest indices of an alias, the write index first (where the sink looks
    for a document that may exist already)."""
    return newest_first(aliases, write_index_of(aliases, alias))[:depth]


def copy_name(source: str, started_at: str) -> str:
    """alias-v1-000002 -> alias-v1-000002-r<time>; a re-classified index is re-classified to
    a new time."""
    started = datetime.fromisoformat(started_at)
    base = _STAMPED.sub("", source)
    name = f"{base}-r{started:%Y%m%d%H%M%S}"
    if name == source:  # re-classified again within the same second
        name = f"{base}-r{started + timedelta(seconds=1):%Y%m%d%H%M%S}"
    return name
