"""The one way a source runs as a command: a Kafka output, signals, flushing, clear errors.

Every source's `main` builds its `Source` and hands it to `main_for`, so each behaves the
same on SIGINT/SIGTERM (stop, flush what was sent, exit 0), on bad settings (one line per
variable to fix, exit 2) and when the service refuses it (one line naming the cause, exit 2).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable

from pydantic import ValidationError
from pydantic_settings import SettingsError as PydanticSettingsError

from streamapp.errors import ServiceUnreachable
from streamapp.settings import ENV_PREFIX, SettingsError, format_parse_error, load_settings
from streamapp.sources.base import RecordOutput, Source, SourceError
from streamapp.sources.output import KafkaOutput
from streamapp.topics import ensure_topics

log = logging.getLogger(__name__)


async def run_source(
    source: Source, run: Callable[[RecordOutput], Awaitable[None]] | None = None
) -> None:
    """Topics ensured, `source.run(out)` (or `run`) until it returns or SIGINT/SIGTERM calls
    `source.stop()`, then every record sent is flushed before the producer closes."""
    settings = load_settings()
    await ensure_topics(settings)
    out = KafkaOutput(settings)
    await out.start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, source.stop)
    try:
        await (run or source.run)(out)
    finally:
        try:
            await out.stop()
        finally:
            source.close()
            log.info("%s source stopped: %s", source.name, source.counters())


def main_for(
    name: str,
    build: Callable[[], Source],
    *,
    settings_error: Callable[[ValidationError], str],
    prefix: str = ENV_PREFIX,
    run: Callable[[Source, RecordOutput], Awaitable[None]] | None = None,
) -> int:
    """Run the source `build()` makes as a command; return the exit code.

    `settings_error` formats the source's own settings errors (its variables, secrets not
    echoed); `run` replaces `source.run(out)` when the command passes options to it.
    """
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s"
    )
    try:
        source = build()
        bound = None if run is None else (lambda out: run(source, out))
        asyncio.run(run_source(source, bound))
    except ValidationError as exc:
        print(settings_error(exc), file=sys.stderr)
        return 2
    except PydanticSettingsError as exc:
        print(format_parse_error(exc, prefix=prefix, what=name), file=sys.stderr)
        return 2
    except SettingsError as exc:
        print(exc.code, file=sys.stderr)
        return 2
    except SourceError as exc:
        print(f"{name} source stopped: {exc}", file=sys.stderr)
        return 2
    except ServiceUnreachable as exc:
        print(f"{name} source cannot start: {exc}", file=sys.stderr)
        return 2
    return 0
