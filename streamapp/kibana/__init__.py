"""Kibana dashboard for streamapp: saved objects (data views, Lens charts, a saved search and the
dashboard) and `python -m streamapp.kibana import` to load them through Kibana's import API.

Settings come from `STREAMAPP_KIBANA_*` variables; the index names come from the main settings
(`STREAMAPP_TWEETS_INDEX`, `STREAMAPP_NEWS_INDEX`) so the data views match what the worker writes.
"""

from __future__ import annotations

import re

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from streamapp.kibana.objects import (
    OBJECTS_FILE,
    check_fields,
    dangling_references,
    field_uses,
    flatten_mapping,
    load_objects,
    rewrite_index_names,
    to_ndjson,
)
from streamapp.settings import blank_is_unset, format_errors

KIBANA_ENV_PREFIX = "STREAMAPP_KIBANA_"

__all__ = [
    "OBJECTS_FILE",
    "KibanaSettings",
    "check_fields",
    "dangling_references",
    "field_uses",
    "flatten_mapping",
    "load_kibana_settings",
    "load_objects",
    "rewrite_index_names",
    "to_ndjson",
]


class KibanaSettingsError(SystemExit):
    """Invalid Kibana settings; the message names the variable to fix."""


class KibanaSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=KIBANA_ENV_PREFIX, extra="ignore", frozen=True)

    url: str = Field("http://127.0.0.1:5601", description="Kibana base URL (with base path)")
    username: str | None = None
    password: SecretStr | None = None
    api_key: SecretStr | None = Field(None, description="encoded API key (the `encoded` value)")
    space: str | None = Field(None, description="Kibana space id; unset: the default space")
    wait_timeout: float = Field(180.0, gt=0, description="seconds to wait for Kibana to be ready")
    request_timeout: float = Field(30.0, gt=0, description="seconds per HTTP request")

    @field_validator("username", "password", "api_key", "space", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return blank_is_unset(value)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("expected an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("space")
    @classmethod
    def _space(cls, value: str | None) -> str | None:
        # Kibana space ids: lowercase letters, digits, '_' and '-'.
        if value is not None and not re.match(r"^[a-z0-9_-]+$", value):
            raise ValueError("a space id is lowercase letters, digits, '_' and '-'")
        return value or None

    @model_validator(mode="after")
    def _auth(self) -> KibanaSettings:
        if (self.username is None) != (self.password is None):
            raise ValueError(
                f"set both {KIBANA_ENV_PREFIX}USERNAME and {KIBANA_ENV_PREFIX}PASSWORD, or neither"
            )
        if self.api_key is not None and self.username is not None:
            raise ValueError(
                f"set either {KIBANA_ENV_PREFIX}API_KEY or {KIBANA_ENV_PREFIX}USERNAME/PASSWORD"
            )
        return self

    @property
    def base(self) -> str:
        """URL prefix of the space's API (`/s/<space>` outside the default space)."""
        if self.space and self.space != "default":
            return f"{self.url}/s/{self.space}"
        return self.url


def load_kibana_settings(**overrides: object) -> KibanaSettings:
    try:
        return KibanaSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        message = format_errors(exc, prefix=KIBANA_ENV_PREFIX, what="Kibana")
        raise KibanaSettingsError(message) from None
