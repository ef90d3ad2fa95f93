"""`python -m devstack {fetch,start,stop,status,reset} [kafka|elasticsearch ...]`."""

from __future__ import annotations

import argparse
import sys

from devstack.config import DevstackConfig
from devstack.elasticsearch import ElasticsearchService
from devstack.kafka import KafkaService
from devstack.process import DevstackError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    parser.add_argument("command", choices=["fetch", "start", "stop", "status", "reset", "env"])
    parser.add_argument(
        "services", nargs="*", default=[], help="kafka, elasticsearch (default: both)"
    )
    args = parser.parse_args(argv)
    cfg = DevstackConfig.from_env()
    all_services: dict[str, KafkaService | ElasticsearchService] = {
        "kafka": KafkaService(cfg),
        "elasticsearch": ElasticsearchService(cfg),
    }
    unknown = set(args.services) - set(all_services)
    if unknown:
        parser.error(f"unknown service(s): {', '.join(sorted(unknown))}")
    chosen = [all_services[name] for name in (args.services or all_services)]
    try:
        if args.command == "fetch":
            for svc in chosen:
                svc.fetch()
        elif args.command == "start":
            for svc in chosen:
                svc.start()
        elif args.command == "stop":
            for svc in reversed(chosen):
                svc.stop()
        elif args.command == "reset":
            for svc in reversed(chosen):
                svc.reset()
        elif args.command == "status":
            for svc in chosen:
                print(svc.status())
        elif args.command == "env":
            # Settings for streamapp that point at these services.
            print(f"STREAMAPP_KAFKA_BROKER=kafka://{cfg.kafka_bootstrap}")
            print(f"STREAMAPP_ELASTICSEARCH_URL={cfg.elasticsearch_url}")
    except DevstackError as exc:
        print(f"devstack: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
