"""The contract every source fulfils, and what it writes to.

A source reads one outside service (or files) and hands typed records to a `RecordOutput`
until `stop()` is called; `sources.runner` runs any of them as a command with the same
signals, flushing and error reporting. Plug-in seams in the manner of obsei's `base_source`.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar, Protocol

from streamapp.models import NewsArticle, Tweet


class SourceError(RuntimeError):
    """A source cannot go on (bad credentials, bad settings); the message says what to fix."""


class RecordOutput(Protocol):
    """Where records go: the input topics in production, a list in tests."""

    async def send(self, record: Tweet | NewsArticle) -> None: ...

    async def send_json(self, kind: str, key: str, obj: dict[str, Any]) -> None:
        """A JSON object as it is, to the `tweets` or `news` topic: file replay passes input
        through unchanged (deciding what is valid is the worker's job, with dead letters)."""
        ...

    async def flush(self) -> None:
        """Return once everything sent so far is durably stored (a source saves its resume
        state only after this)."""
        ...


class Source(abc.ABC):
    """Reads an outside service and sends what it finds to a `RecordOutput`."""

    #: The name of `python -m streamapp.sources NAME`.
    name: ClassVar[str]

    @abc.abstractmethod
    async def run(self, out: RecordOutput) -> None:
        """Send records until the input ends or `stop()` is called."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Make `run` return soon; safe to call from a signal handler."""

    def counters(self) -> dict[str, int]:
        """What the source did, for the log line at exit."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the source holds (called once `run` has returned)."""
