"""Which asyncio event loop the worker runs on: uvloop unless Faust was told otherwise.

A loaded worker turns its event loop once per message (Faust's stream and its consumer each
yield per message) and reads Kafka and Elasticsearch through many small socket operations;
uvloop does both in C. Faust has its own switch, `faust -L aio|uvloop` (or `FAUST_LOOP`),
applied when `faust` is imported; when it is set it wins, so `faust -L aio -A streamapp
worker` runs on asyncio's loop.

Only the `faust -A streamapp worker` path calls `use_default_loop` (`streamapp.app`):
`create_app` and importing the package leave the running process's loop alone.
"""

from __future__ import annotations

import asyncio
import logging
import os

log = logging.getLogger(__name__)

#: Environment variables through which Faust's `-L/--loop` reaches us (faust/__init__.py).
FAUST_LOOP_VARIABLES = ("FAUST_LOOP", "F_LOOP")


def chosen_by_faust() -> str | None:
    """The loop named with Faust's own switch, if any."""
    for name in FAUST_LOOP_VARIABLES:
        if os.environ.get(name):
            return os.environ[name]
    return None


def use_default_loop() -> str:
    """Make uvloop the event loop policy unless Faust's switch names a loop; return the name
    of the loop the worker will run on. Call it before the worker's loop is made."""
    named = chosen_by_faust()
    if named is not None:
        return named  # faust has applied it already (`mode.loop.use`)
    try:
        import uvloop
    except ImportError:  # a dependency of the package; absent only in a broken install
        log.warning("uvloop is not installed: the worker runs on asyncio's own event loop")
        return "aio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    # What faust's switch would have set, so that processes started from this one agree.
    os.environ["FAUST_LOOP"] = "uvloop"
    return "uvloop"
