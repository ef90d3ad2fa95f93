"""Raw Kafka bytes -> typed record, or a precise reason why not.

Agents consume raw bytes and decode here rather than letting Faust decode: a Faust decode
error surfaces inside the agent's stream and either crashes it or is skipped, while we want
every bad message in the dead-letter topic with its reason and original bytes. Faust's own
record coercion is also lenient (`None` becomes the string "None"), so input is checked
against the record's field types first.
"""

from __future__ import annotations

import json
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from streamapp.faust_compat import record_defaults, record_fields
from streamapp.models import InputRecord, NewsArticle, Tweet, newsapi_fields

_SOURCE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class DecodeFailure:
    reason: str  # oversized | invalid_json | schema_violation
    error: str


class SchemaError(ValueError):
    pass


def decode(
    raw: bytes | None, model: type[Tweet] | type[NewsArticle], *, max_bytes: int
) -> InputRecord | DecodeFailure:
    if raw is None:
        return DecodeFailure("invalid_json", "empty message value (tombstone)")
    if len(raw) > max_bytes:
        return DecodeFailure("oversized", f"message is {len(raw)} bytes, limit is {max_bytes}")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        # Rare, and stricter than the standard library (NaN, integers beyond 64 bits, deep
        # nesting): the standard library decides, and its message is the reason.
        data = _slow_loads(raw)
    if isinstance(data, DecodeFailure):
        return data
    if not isinstance(data, dict):
        return DecodeFailure("invalid_json", f"expected a JSON object, got {type(data).__name__}")
    data.pop("__faust", None)
    if model is NewsArticle and ("publishedAt" in data or isinstance(data.get("source"), dict)):
        data = newsapi_fields(data)
    try:
        fields = check_fields(model, data)
        # Checked, known fields only, dates parsed: the constructor is all `from_data` would
        # add to (~14 -> 5 us per record).
        return model(**fields)
    except (SchemaError, TypeError, ValueError) as exc:
        return DecodeFailure("schema_violation", str(exc))


def _slow_loads(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        return DecodeFailure("invalid_json", f"not valid UTF-8 JSON: {exc}")
    except RecursionError:
        return DecodeFailure("invalid_json", "JSON nested too deeply to parse")


def check_fields(model: type[Any], data: dict[str, Any]) -> dict[str, Any]:
    """Check JSON values against the record's annotations; return only the known fields,
    dates as `datetime`."""
    out: dict[str, Any] = {}
    for name, optional, check in _plan(model):
        value = data.get(name)
        if value is None:
            if optional:
                continue
            raise SchemaError(f"{model.__name__}.{name} is required")
        out[name] = check(value)
    return out


Check = Callable[[Any], Any]


_PLANS: dict[type[Any], tuple[tuple[str, bool, Check], ...]] = {}


def _plan(model: type[Any]) -> tuple[tuple[str, bool, Check], ...]:
    """Per field: its name, whether it has a default, and its check (worked out once per
    model: reading the annotations for every message was a visible part of decoding)."""
    plan = _PLANS.get(model)
    if plan is None:
        defaults = record_defaults(model)
        plan = _PLANS[model] = tuple(
            (name, name in defaults, _checker(model.__name__, name, annotation))
            for name, annotation in record_fields(model).items()
        )
    return plan


def _checker(model_name: str, name: str, annotation: Any) -> Check:
    """A function that raises SchemaError for a value not of `annotation`, else returns it
    (a date parsed)."""
    where = f"{model_name}.{name}"
    origin = typing.get_origin(annotation)
    if origin is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation, origin = args[0], typing.get_origin(args[0])
    if origin in (list, typing.List):  # noqa: UP006
        (item,) = typing.get_args(annotation) or (Any,)
        check_item = _checker(model_name, f"{name}[]", item)

        def check_list(value: Any) -> Any:
            if not isinstance(value, list):
                raise SchemaError(f"{where} must be a list, got {type(value).__name__}")
            return [check_item(element) for element in value]

        return check_list
    if annotation is str:

        def check_str(value: Any) -> Any:
            if not isinstance(value, str):
                raise SchemaError(f"{where} must be a string, got {type(value).__name__}")
            if not value.isascii():
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError as exc:
                    # JSON's \ud800 escapes decode to lone surrogates, which no UTF-8 encoder
                    # (Elasticsearch's client, Kafka's dead-letter record) accepts.
                    raise SchemaError(
                        f"{where} is not valid Unicode: lone surrogate at position {exc.start}"
                    ) from None
            if name == "id" and not value.strip():
                raise SchemaError(f"{where} must not be empty")
            if name == "source" and not _SOURCE.match(value):
                # It becomes part of table keys and a keyword in dashboards.
                raise SchemaError(f"{where} must match {_SOURCE.pattern}, got {value[:64]!r}")
            return value

        return check_str
    if annotation is datetime:

        def check_date(value: Any) -> Any:
            if not isinstance(value, str):
                raise SchemaError(f"{where} must be an ISO 8601 string, got {type(value).__name__}")
            # Parsed here, not by Faust's `isodates`: its parser reads a fraction of a second
            # as that many microseconds (".5" -> 5 us), and the standard library's (3.11+)
            # takes every form it takes.
            try:
                return datetime.fromisoformat(value)
            except ValueError as exc:
                raise SchemaError(f"{where} is not an ISO 8601 date: {value[:64]!r}") from exc

        return check_date
    if annotation is bool:

        def check_bool(value: Any) -> Any:
            if not isinstance(value, bool):
                raise SchemaError(f"{where} must be a boolean")
            return value

        return check_bool
    if annotation in (int, float):

        def check_number(value: Any) -> Any:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise SchemaError(f"{where} must be a number")
            return value

        return check_number
    return lambda value: value
