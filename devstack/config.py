"""Where the local services live and which versions/ports they use (env: DEVSTACK_*)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r} is not an integer") from None
    if not 0 < value < 65536:
        raise SystemExit(f"{name}={raw!r} is not a valid port")
    return value


@dataclass(frozen=True)
class DevstackConfig:
    kafka_version: str
    elasticsearch_version: str
    kafka_port: int
    kafka_controller_port: int
    elasticsearch_port: int
    # Unpacked artefacts (Maven's own ~/.m2 holds the downloads).
    cache_dir: Path
    # Data, logs and pid files of the running services.
    run_dir: Path
    es_user: str
    es_heap: str

    @classmethod
    def from_env(cls) -> DevstackConfig:
        run_dir = Path(os.environ.get("DEVSTACK_RUN_DIR", PROJECT_ROOT / ".devstack"))
        cache_default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        return cls(
            kafka_version=os.environ.get("DEVSTACK_KAFKA_VERSION", "4.1.1"),
            elasticsearch_version=os.environ.get("DEVSTACK_ES_VERSION", "8.19.21"),
            kafka_port=_int("DEVSTACK_KAFKA_PORT", 9092),
            kafka_controller_port=_int("DEVSTACK_KAFKA_CONTROLLER_PORT", 9093),
            elasticsearch_port=_int("DEVSTACK_ES_PORT", 9200),
            cache_dir=Path(
                os.environ.get("DEVSTACK_CACHE_DIR", cache_default / "streamapp-devstack")
            ),
            run_dir=run_dir.resolve(),
            es_user=os.environ.get("DEVSTACK_ES_USER", "streamapp-es"),
            es_heap=os.environ.get("DEVSTACK_ES_HEAP", "512m"),
        )

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def elasticsearch_url(self) -> str:
        return f"http://127.0.0.1:{self.elasticsearch_port}"
