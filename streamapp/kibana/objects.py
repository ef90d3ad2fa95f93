"""The Kibana saved objects shipped with streamapp, and an offline check of the fields they use.

`saved_objects.ndjson` is Kibana 8.x export format (one object a line). Kibana itself cannot run
where the project is developed, so the file is checked here instead: every field a data view,
Lens layer, formula, KQL query or saved search uses must exist, with a type that operation
accepts, in the mapping the sink really creates (see tests/test_kibana_objects.py).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OBJECTS_FILE = Path(__file__).with_name("saved_objects.ndjson")

# The index names the data view titles are written with; rewritten when settings differ.
DEFAULT_TWEETS_INDEX = "streamapp-tweets"
DEFAULT_NEWS_INDEX = "streamapp-news"
DEFAULT_ALERTS_INDEX = "streamapp-alerts"

RECORDS_FIELD = "___records___"  # Lens' pseudo-field for count()

NUMERIC_TYPES = frozenset(
    {
        "long",
        "integer",
        "short",
        "byte",
        "double",
        "float",
        "half_float",
        "scaled_float",
        "unsigned_long",
    }
)
TERMS_TYPES = frozenset({"keyword", "constant_keyword", "boolean"})
SORTABLE_TYPES = NUMERIC_TYPES | TERMS_TYPES | {"date", "date_nanos"}
DATE_TYPES = frozenset({"date", "date_nanos"})

# What each use accepts; None: any mapped type (a column shown in Discover, a KQL field).
ACCEPTS: dict[str, frozenset[str] | None] = {
    "time field": DATE_TYPES,
    "date_histogram": DATE_TYPES,
    "average": NUMERIC_TYPES,
    "sum": NUMERIC_TYPES,
    "min": NUMERIC_TYPES,
    "max": NUMERIC_TYPES,
    "median": NUMERIC_TYPES,
    "percentile": NUMERIC_TYPES,
    "percentile_rank": NUMERIC_TYPES,
    "standard_deviation": NUMERIC_TYPES,
    "terms": TERMS_TYPES,
    "unique_count": SORTABLE_TYPES,
    "count": SORTABLE_TYPES,
    "last_value": None,
    "sort": SORTABLE_TYPES,
    "column": None,
    "kql": None,
    "kql boolean": frozenset({"boolean"}),
}


def load_objects(path: Path = OBJECTS_FILE) -> list[dict[str, Any]]:
    """Parse an NDJSON export; a trailing export-details line (`exportedCount`) is skipped."""
    objects = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{n}: not JSON: {exc}") from None
        if "exportedCount" in obj:
            continue
        if not isinstance(obj, dict) or "type" not in obj or "id" not in obj:
            raise ValueError(f"{path}:{n}: a saved object needs 'type' and 'id'")
        objects.append(obj)
    return objects


def to_ndjson(objects: Iterable[Mapping[str, Any]]) -> bytes:
    return "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objects).encode("utf-8")


def rewrite_index_names(
    objects: Iterable[Mapping[str, Any]],
    tweets_index: str,
    news_index: str,
    alerts_index: str = DEFAULT_ALERTS_INDEX,
) -> list[dict[str, Any]]:
    """Copy of the objects with data view titles pointing at the configured index names.

    A title is a comma-separated list of index patterns; each default name in it is replaced.
    Data view ids stay the same, so a re-import overwrites rather than duplicates.
    """
    names = {
        DEFAULT_TWEETS_INDEX: tweets_index,
        DEFAULT_NEWS_INDEX: news_index,
        DEFAULT_ALERTS_INDEX: alerts_index,
    }
    out: list[dict[str, Any]] = []
    for original in objects:
        obj = copy.deepcopy(dict(original))
        if obj["type"] == "index-pattern":
            parts = obj["attributes"]["title"].split(",")
            obj["attributes"]["title"] = ",".join(names.get(p.strip(), p) for p in parts)
        out.append(obj)
    return out


def title_of(obj: Mapping[str, Any]) -> str:
    attrs = obj.get("attributes") or {}
    return str(attrs.get("title") or attrs.get("name") or "")


def dangling_references(objects: Iterable[Mapping[str, Any]]) -> list[str]:
    """References that name no object in the same file (Kibana's import would refuse them)."""
    objects = list(objects)
    known = {(o["type"], o["id"]) for o in objects}
    return [
        f"{o['type']} {o['id']}: reference {r['name']!r} -> {r['type']} {r['id']} not in the file"
        for o in objects
        for r in o.get("references", [])
        if (r["type"], r["id"]) not in known
    ]


# -- fields used by the objects -------------------------------------------------------------


@dataclass(frozen=True)
class FieldUse:
    """One field used by one saved object, through one data view, for one purpose."""

    obj: str  # "<type> <id>"
    data_view: str | None  # id; None when the object has no reference for it
    field: str
    use: str  # a key of ACCEPTS
    where: str  # human-readable location inside the object


_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_KQL_FIELD = re.compile(r"([A-Za-z_@][\w.@*-]*)\s*(:|<=|>=|<|>)\s*(\S*)")


def kql_fields(query: str) -> list[tuple[str, str]]:
    """`(field, use)` pairs of a KQL query: `field: true|false` needs a boolean, anything
    else just needs the field. Quoted values are blanked first so their text never counts."""
    blanked = _QUOTED.sub('""', query)
    found = []
    for m in _KQL_FIELD.finditer(blanked):
        field, op, value = m.groups()
        value = value.rstrip(")").lower()
        use = "kql boolean" if op == ":" and value in ("true", "false") else "kql"
        found.append((field, use))
    return found


_FORMULA_KQL = re.compile(r"kql\s*=\s*'((?:[^'\\]|\\.)*)'")


def field_uses(objects: Iterable[Mapping[str, Any]]) -> list[FieldUse]:
    """Every field the objects use, with the data view each use resolves against."""
    uses: list[FieldUse] = []
    for obj in objects:
        kind, oid = obj["type"], obj["id"]
        name = f"{kind} {oid}"
        refs = {r["name"]: r["id"] for r in obj.get("references", [])}
        attrs = obj.get("attributes") or {}
        if kind == "index-pattern":
            if attrs.get("timeFieldName"):
                uses.append(FieldUse(name, oid, attrs["timeFieldName"], "time field", "title"))
        elif kind == "lens":
            uses += _lens_uses(name, attrs, refs)
        elif kind == "search":
            uses += _search_uses(name, attrs, refs)
    return uses


def _lens_uses(name: str, attrs: Mapping[str, Any], refs: Mapping[str, str]) -> list[FieldUse]:
    uses = []
    state = attrs.get("state") or {}
    layers = (state.get("datasourceStates") or {}).get("formBased", {}).get("layers", {})
    views = []
    for layer_id, layer in layers.items():
        view = refs.get(f"indexpattern-datasource-layer-{layer_id}")
        views.append(view)
        for col_id, col in layer.get("columns", {}).items():
            where = f"layer {layer_id} column {col_id}"
            field = col.get("sourceField")
            if field and field != RECORDS_FIELD:
                uses.append(FieldUse(name, view, field, col["operationType"], where))
            flt = col.get("filter") or {}
            if flt.get("language") == "kuery":
                uses += [
                    FieldUse(name, view, f, use, f"{where} filter")
                    for f, use in kql_fields(flt.get("query", ""))
                ]
            formula = (col.get("params") or {}).get("formula")
            if formula:
                for kql in _FORMULA_KQL.findall(formula):
                    uses += [
                        FieldUse(name, view, f, use, f"{where} formula")
                        for f, use in kql_fields(kql)
                    ]
    query = state.get("query") or {}
    if query.get("language") == "kuery":
        # The panel query applies to every layer, so each layer's data view needs the field.
        for view in views or [None]:
            uses += [FieldUse(name, view, f, use, "query") for f, use in kql_fields(query["query"])]
    for i, flt in enumerate(state.get("filters") or []):
        meta = flt.get("meta") or {}
        if meta.get("key"):
            view = refs.get(meta.get("indexRefName", ""))
            uses.append(FieldUse(name, view, meta["key"], "kql", f"filter {i}"))
    return uses


def _search_uses(name: str, attrs: Mapping[str, Any], refs: Mapping[str, str]) -> list[FieldUse]:
    meta = json.loads((attrs.get("kibanaSavedObjectMeta") or {}).get("searchSourceJSON", "{}"))
    view = refs.get(meta.get("indexRefName", ""))
    uses = [FieldUse(name, view, c, "column", "columns") for c in attrs.get("columns", [])]
    uses += [FieldUse(name, view, s[0], "sort", "sort") for s in attrs.get("sort", [])]
    query = meta.get("query") or {}
    if query.get("language") == "kuery":
        uses += [FieldUse(name, view, f, use, "query") for f, use in kql_fields(query["query"])]
    for i, flt in enumerate(meta.get("filter") or []):
        key = (flt.get("meta") or {}).get("key")
        if key:
            uses.append(FieldUse(name, view, key, "kql", f"filter {i}"))
    return uses


# -- checking against mappings --------------------------------------------------------------


def flatten_mapping(properties: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """`{"a": {"properties": {"b": {...}}}}` -> {"a.b": type}; multi-fields become `a.keyword`."""
    out: dict[str, str] = {}
    for key, spec in properties.items():
        path = f"{prefix}{key}"
        if "properties" in spec:
            out.update(flatten_mapping(spec["properties"], f"{path}."))
            continue
        out[path] = spec.get("type", "object")
        for sub, sub_spec in (spec.get("fields") or {}).items():
            out[f"{path}.{sub}"] = sub_spec.get("type", "object")
    return out


def check_fields(
    objects: Iterable[Mapping[str, Any]], mappings: Mapping[str, Mapping[str, str]]
) -> list[str]:
    """Problems with the fields the objects use, against `mappings`: index name or alias ->
    flattened field types (see flatten_mapping). Empty when every use is satisfied.

    A data view over several indices (comma-separated title) needs a field in at least one of
    them, with one type wherever it exists (Kibana shows a differing type as a conflict).
    """
    objects = list(objects)
    views = {o["id"]: o["attributes"]["title"] for o in objects if o["type"] == "index-pattern"}
    problems = []
    for use in field_uses(objects):
        label = f"{use.obj} ({use.where}): {use.field!r}"
        if use.data_view not in views:
            problems.append(f"{label}: data view {use.data_view!r} is not in the file")
            continue
        title = views[use.data_view]
        types = set()
        for index in (p.strip() for p in title.split(",")):
            if index not in mappings:
                problems.append(f"{label}: no mapping given for index {index!r}")
                continue
            if "*" in use.field:
                types |= {t for f, t in mappings[index].items() if _glob(use.field, f)}
            elif use.field in mappings[index]:
                types.add(mappings[index][use.field])
        if not types:
            problems.append(f"{label}: no such field in {title}")
        elif len(types) > 1 and "*" not in use.field:
            problems.append(f"{label}: conflicting types {sorted(types)} across {title}")
        else:
            accepts = ACCEPTS.get(use.use, frozenset())
            if accepts is not None and not types & accepts:
                problems.append(
                    f"{label}: {use.use} needs {'/'.join(sorted(accepts)) or '?'}, "
                    f"mapped as {'/'.join(sorted(types))} in {title}"
                )
    return problems


def _glob(pattern: str, field: str) -> bool:
    return re.fullmatch(".*".join(map(re.escape, pattern.split("*"))), field) is not None
