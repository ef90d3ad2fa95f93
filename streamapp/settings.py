"""All configuration in one typed place, read from `STREAMAPP_*` environment variables.

Defaults work against the local stack started by `python -m devstack start`.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings import SettingsError as PydanticSettingsError

from streamapp.terms import Terms

ENV_PREFIX = "STREAMAPP_"
Backend = Literal["offline", "expertai", "transformers"]
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_INDEX_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,254}$")


def blank_is_unset(value: object) -> object:
    """`NAME=` lines in an .env file mean "not set", not an empty value."""
    return None if isinstance(value, str) and not value.strip() else value


class SettingsError(SystemExit):
    """Invalid configuration; the message names the environment variable to fix."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    # -- Faust application -------------------------------------------------
    app_id: str = Field("streamapp", description="Faust app id: consumer group and table prefix")
    kafka_broker: str = Field(
        "kafka://127.0.0.1:9092", description="Kafka bootstrap servers, comma separated"
    )
    data_dir: Path = Field(
        Path(".streamapp-data"),
        description="Faust data dir (table stores); {hostname} becomes the host's name, so "
        "replicas sharing a volume (docker compose --scale) keep stores of their own",
    )
    table_store: str = Field("rocksdb://", description="Faust table store: rocksdb:// or memory://")
    topic_partitions: int = Field(4, ge=1, le=1024, description="partitions of input topics")
    topic_replication: int = Field(1, ge=1, description="replication factor of created topics")
    # Also how long a killed worker's partitions wait before a rebalance hands them on.
    broker_session_timeout: float = Field(10.0, gt=0)
    broker_heartbeat_interval: float = Field(3.0, gt=0)
    commit_interval: float = Field(2.0, gt=0, description="seconds between offset commits")
    # aiokafka keeps one fetch in flight per broker, and leaves out of it the partitions whose
    # records the worker has not taken yet. A fetch that holds only quiet partitions (the
    # news topic, say) is then held by the broker for this long while the busy ones wait
    # behind it. Faust fixes it at 1.5 s: at a steady 1,000 msgs/s the worker fell into a
    # cycle of 1.5 s fetches (p50 ~2 s produce -> searchable instead of ~0.9 s).
    kafka_fetch_max_wait: float = Field(
        0.1,
        gt=0,
        le=30,
        description="seconds the broker may hold a fetch that has nothing new to return",
    )

    # -- topics -----------------------------------------------------------------
    tweets_topic: str = "tweets"
    news_topic: str = "news"
    dead_letter_topic: str = "streamapp-deadletter"

    # -- processing -------------------------------------------------------------
    # Larger batches spread the per-batch costs (a bulk request, the changelog writes) over
    # more messages. A short timeout does not make them small under load: what arrives while
    # a batch runs is the next one. It keeps a moderate stream from waiting, since Faust's
    # `take()` waits out the timeout after each batch; smaller batches cost CPU per message.
    batch_size: int = Field(2000, ge=1, le=100_000, description="messages per batch")
    batch_timeout: float = Field(0.1, gt=0, description="max seconds to fill a batch")
    max_message_bytes: int = Field(
        256 * 1024, ge=1024, description="larger messages go to the dead-letter topic"
    )
    poison_attempts: int = Field(
        3,
        ge=1,
        le=100,
        description="tries of a message that fails on its own before it is dead-lettered",
    )
    dead_letter_max_bytes: int = Field(
        900_000,
        ge=10_000,
        description="larger dead letters carry a truncated copy of the message (keep it "
        "under the producer's and the topic's message size limits)",
    )
    classifier: Backend = Field("offline", description="backend for both topics")
    tweets_classifier: Backend | None = Field(None, description="overrides CLASSIFIER for tweets")
    news_classifier: Backend | None = Field(None, description="overrides CLASSIFIER for news")
    classifier_fallback: Literal["offline", "wait"] = Field(
        "offline",
        description="when a remote backend fails past its retries: classify offline and mark "
        "the document, or wait (retry the batch, consuming nothing meanwhile)",
    )
    languages: str = Field(
        "", description="comma-separated ISO 639-1 codes to classify; empty = all"
    )
    detect_language: bool = Field(True, description="detect the language when a source omits it")
    terms: Terms = Field(
        default_factory=list,
        description="comma-separated terms to track across all sources: counted per term, "
        "and what sources without a query of their own ask for (see streamapp/terms.py)",
    )

    changelog_confirm_timeout: float = Field(
        30.0,
        gt=0,
        description="seconds a batch waits for its table changelog writes before it is retried",
    )

    # -- windowed tables -------------------------------------------------------
    window_size: float = Field(60.0, gt=0, description="tumbling window size, seconds")
    hopping_size: float = Field(300.0, gt=0, description="hopping window size, seconds")
    hopping_step: float = Field(60.0, gt=0, description="hopping window step, seconds")
    window_expires: float = Field(3600.0, gt=0, description="seconds a window is kept")

    # -- Elasticsearch ------------------------------------------------------
    elasticsearch_url: str = "http://127.0.0.1:9200"
    elasticsearch_username: str | None = None
    elasticsearch_password: SecretStr | None = None
    elasticsearch_api_key: SecretStr | None = None
    elasticsearch_ca_certs: Path | None = None
    elasticsearch_timeout: float = Field(30.0, gt=0, description="request timeout, seconds")
    tweets_index: str = "streamapp-tweets"
    news_index: str = "streamapp-news"
    index_shards: int = Field(1, ge=1)
    index_replicas: int = Field(0, ge=0)
    index_rollover_age: str | None = Field(
        "1d",
        pattern=r"^\d+(d|h|m|s)$",
        description="roll the write index over when it is this old (Elasticsearch time "
        "units: 1d, 12h); empty: never by age",
    )
    index_rollover_size: str | None = Field(
        "50gb",
        pattern=r"^\d+(gb|mb|kb|b)$",
        description="... or when its primary shard is this large; empty: never by size",
    )
    index_rollover_docs: int | None = Field(
        None, ge=1, description="... or when it holds this many documents; unset: never"
    )
    retention_days: float | None = Field(
        None,
        gt=0,
        description="delete an index once nothing in it was processed in this many days; "
        "unset: keep everything",
    )
    retention_interval: float = Field(
        300.0, gt=0, description="seconds between rollover and retention checks (leader)"
    )
    retry_initial: float = Field(0.5, gt=0, description="first retry delay when ES is down")
    retry_max: float = Field(30.0, gt=0, description="largest retry delay when ES is down")

    health_stall_seconds: float = Field(
        60.0,
        gt=0,
        description="/health/ turns 503 when an agent holds one batch, or takes none while "
        "messages wait, for longer than this",
    )

    # -- web server ----------------------------------------------------------
    web_host: str = "127.0.0.1"
    web_port: int = Field(6066, ge=1, le=65535)
    web_url: str | None = Field(
        None,
        description="URL other workers reach this one's views at; default http://WEB_HOST:"
        "WEB_PORT (the host name when WEB_HOST is 0.0.0.0)",
    )
    cluster_timeout: float = Field(
        2.0, gt=0, description="seconds a view waits for another worker's partitions"
    )

    # -- spike alerts (see streamapp/alerts.py)
    alerts_enabled: bool = Field(True, description="detect hate / negative-sentiment spikes")
    alerts_topic: str = Field("streamapp-alerts", description="Kafka topic alerts go to")
    alerts_index: str = Field("streamapp-alerts", description="Elasticsearch index of alerts")
    alert_interval: float = Field(10.0, gt=0, description="seconds between spike checks")
    alert_min_volume: int = Field(
        20, ge=1, description="messages a window (and its baseline) needs before it can alert"
    )
    alert_factor: float = Field(
        2.0, ge=1, description="alert when the rate reaches this multiple of the baseline"
    )
    alert_min_rate: float = Field(
        0.2, ge=0, le=1, description="... and at least this share of the window's messages"
    )
    alert_baseline_windows: int = Field(
        10, ge=1, description="tumbling windows before the newest that form the baseline"
    )
    alert_webhook_url: str | None = Field(
        None, description="POST each alert here as JSON (retried with backoff); unset: none"
    )
    alert_webhook_attempts: int = Field(5, ge=1, description="tries per alert POST")

    @field_validator("tweets_topic", "news_topic", "dead_letter_topic")
    @classmethod
    def _topic_name(cls, value: str) -> str:
        if not _TOPIC_NAME.match(value) or value in {".", ".."}:
            raise ValueError("a Kafka topic name uses only letters, digits, '.', '_' and '-'")
        return value

    @field_validator("tweets_index", "news_index")
    @classmethod
    def _index_name(cls, value: str) -> str:
        if not _INDEX_NAME.match(value):
            raise ValueError("an index name is lowercase letters, digits, '.', '_' and '-'")
        return value

    @field_validator("tweets_classifier", "news_classifier", mode="before")
    @classmethod
    def _blank_backend(cls, value: object) -> object:
        return blank_is_unset(value)

    @field_validator("languages")
    @classmethod
    def _languages(cls, value: str) -> str:
        codes = [c.strip().lower() for c in value.split(",") if c.strip()]
        bad = [c for c in codes if not re.fullmatch(r"[a-z]{2,3}", c)]
        if bad:
            raise ValueError(f"expected ISO 639-1 codes like en,de; got {bad}")
        return ",".join(codes)

    @property
    def language_set(self) -> frozenset[str] | None:
        return frozenset(self.languages.split(",")) if self.languages else None

    def backend_for(self, kind: str) -> str:
        """The classifier backend of `tweets` or `news`."""
        chosen = self.tweets_classifier if kind == "tweets" else self.news_classifier
        return chosen or self.classifier

    @field_validator("kafka_broker")
    @classmethod
    def _broker(cls, value: str) -> str:
        for url in value.split(";"):
            for part in url.split(","):
                host = part.strip().removeprefix("kafka://")
                if not re.match(r"^[^:/\s]+:\d{1,5}$", host):
                    raise ValueError(f"expected host:port (optionally kafka://), got {part!r}")
        return value

    @field_validator("elasticsearch_url")
    @classmethod
    def _es_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("expected an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("table_store")
    @classmethod
    def _store(cls, value: str) -> str:
        if not value.startswith(("rocksdb://", "memory://", "aerospike://")):
            raise ValueError("expected rocksdb:// or memory://")
        return value

    @model_validator(mode="after")
    def _windows(self) -> Settings:
        if self.hopping_step > self.hopping_size:
            raise ValueError(f"{ENV_PREFIX}HOPPING_STEP must not exceed {ENV_PREFIX}HOPPING_SIZE")
        if len({self.tweets_topic, self.news_topic, self.dead_letter_topic}) != 3:
            raise ValueError(
                f"{ENV_PREFIX}TWEETS_TOPIC, {ENV_PREFIX}NEWS_TOPIC and "
                f"{ENV_PREFIX}DEAD_LETTER_TOPIC must differ"
            )
        return self

    @property
    def advertised_url(self) -> str:
        if self.web_url:
            return self.web_url.rstrip("/")
        host = socket.gethostname() if self.web_host in ("0.0.0.0", "::", "") else self.web_host
        return f"http://{host}:{self.web_port}"

    @field_validator("data_dir", mode="after")
    @classmethod
    def _data_dir(cls, value: Path) -> Path:
        return Path(str(value).replace("{hostname}", socket.gethostname()))

    @field_validator(
        "web_url",
        "index_rollover_age",
        "index_rollover_size",
        "index_rollover_docs",
        "retention_days",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return blank_is_unset(value)

    @property
    def broker_addresses(self) -> list[tuple[str, int]]:
        """(host, port) of each bootstrap server."""
        out = []
        for part in self.broker_urls.split(","):
            host, _, port = part.strip().rpartition(":")
            out.append((host, int(port)))
        return out

    @property
    def broker_urls(self) -> str:
        """aiokafka-style bootstrap list without the kafka:// scheme."""
        return ",".join(p.strip().removeprefix("kafka://") for p in self.kafka_broker.split(","))


_SECRET_WORDS = ("password", "api_key", "token", "secret")


def format_errors(
    exc: ValidationError,
    *,
    prefix: str = ENV_PREFIX,
    what: str = "streamapp",
    names: Mapping[str, str] | None = None,
) -> str:
    """A settings error as the environment variables to fix, one line each.

    A field is named `prefix + FIELD`, or by `names[field]`, or by itself when pydantic
    reports it under its upper-case alias (a variable outside the prefix, e.g. NEWSAPI_KEY).
    Secret values are never echoed back into logs.
    """
    lines = []
    for err in exc.errors():
        loc = [str(part) for part in err.get("loc", ())]
        message = err["msg"].removeprefix("Value error, ")
        if not loc:
            # Cross-field checks name their variables in the message itself.
            lines.append(f"  {message}")
            continue
        field = loc[0]
        if names and field in names:
            name = names[field]
        elif field.isupper():
            name = field
        else:
            name = f"{prefix}{field.upper()}"
        secret = any(word in name.lower() for word in _SECRET_WORDS)
        shown = "" if secret else f" (got {err.get('input')!r})"
        lines.append(f"  {name}: {message}{shown}")
    return f"invalid {what} settings:\n" + "\n".join(lines)


_FIELD_IN_ERROR = re.compile(r'field "(\w+)"')


def format_parse_error(exc: Exception, *, prefix: str = ENV_PREFIX, what: str = "streamapp") -> str:
    """pydantic-settings' error for a value it could not even parse (a JSON setting that is
    not JSON), as the variable to fix; the value is not echoed (it may be a secret)."""
    match = _FIELD_IN_ERROR.search(str(exc))
    name = f"{prefix}{match.group(1).upper()}" if match else "a setting"
    cause = f": {exc.__cause__}" if exc.__cause__ else ""
    return f"invalid {what} settings:\n  {name}: could not be parsed{cause}"


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; raise SettingsError naming each bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(format_errors(exc)) from None
    except PydanticSettingsError as exc:
        raise SettingsError(format_parse_error(exc)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
