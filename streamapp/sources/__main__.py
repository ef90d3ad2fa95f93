"""`python -m streamapp.sources NAME [ARGS]`: run one source (twitter, newsapi, jetstream, replay).

Sources are plain asyncio processes with an idempotent Kafka producer rather than Faust
workers: they only produce, so they need no consumer group, tables or web server, and each
can be deployed, scaled and restarted on its own.
"""

from __future__ import annotations

import importlib
import sys

SOURCES = {
    "twitter": "streamapp.sources.twitter",
    "newsapi": "streamapp.sources.newsapi",
    "jetstream": "streamapp.sources.jetstream",
    "replay": "streamapp.sources.replay",
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in SOURCES:
        print(f"usage: python -m streamapp.sources {{{','.join(SOURCES)}}} [ARGS]", file=sys.stderr)
        return 2
    module = importlib.import_module(SOURCES[args[0]])
    return int(module.main(args[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
