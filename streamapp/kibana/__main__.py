"""`python -m streamapp.kibana import|path|dump`.

- import: wait for Kibana, then import the dashboard and its objects (overwriting by id).
  Exit 0 on success, 1 when Kibana reports import errors, 2 when Kibana is not reachable, not
  ready in time, or refuses the request.
- path: print where the packaged NDJSON file is (for importing it by hand in the UI).
- dump: print the NDJSON with the data views pointing at the configured index names.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from streamapp.kibana import OBJECTS_FILE, load_kibana_settings
from streamapp.kibana.client import KibanaClient, KibanaError
from streamapp.kibana.objects import load_objects, rewrite_index_names, title_of, to_ndjson
from streamapp.settings import load_settings


def prepared_objects(path: Path) -> list[dict[str, Any]]:
    """The objects in `path`, with data views on the indices the worker really writes to."""
    s = load_settings()
    return rewrite_index_names(load_objects(path), s.tweets_index, s.news_index, s.alerts_index)


def run_import(path: Path, wait: bool) -> int:
    settings = load_kibana_settings()
    objects = prepared_objects(path)
    client = KibanaClient(settings)
    try:
        if wait:
            started = time.monotonic()
            attempts = client.wait_until_ready()
            print(
                f"Kibana at {settings.url} is available "
                f"(after {attempts} attempt(s), {time.monotonic() - started:.1f}s)"
            )
        views = [o["attributes"]["title"] for o in objects if o["type"] == "index-pattern"]
        print(
            f"importing {len(objects)} saved objects from {path} into space "
            f"{settings.space or 'default'} (data views: {'; '.join(views)})"
        )
        result = client.import_objects(to_ndjson(objects), filename=_ndjson_name(path))
    except KibanaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return report(result, objects)


def report(result: dict[str, Any], objects: list[dict[str, Any]]) -> int:
    """Print Kibana's import answer; 0 when it says success, else 1."""
    titles = {(o["type"], o["id"]): title_of(o) for o in objects}
    ok = result.get("successResults") or []
    print(f"successCount: {result.get('successCount', 0)} of {len(objects)}")
    for item in ok:
        key = (item.get("type"), item.get("id"))
        title = (item.get("meta") or {}).get("title") or titles.get(key, "")
        dest = item.get("destinationId")
        moved = f" (as {dest})" if dest and dest != item.get("id") else ""
        print(f"  {item.get('type'):<14} {item.get('id')}{moved}  {title}")
    for warning in result.get("warnings") or []:
        print(f"warning: {warning.get('message', warning)}")
    errors = result.get("errors") or []
    for err in errors:
        error = err.get("error") or {}
        detail = error.get("type", "error")
        if error.get("references"):
            refs = ", ".join(f"{r.get('type')} {r.get('id')}" for r in error["references"])
            detail += f": missing {refs}"
        elif error.get("message"):
            detail += f": {error['message']}"
        title = err.get("title") or (err.get("meta") or {}).get("title") or ""
        print(f"error: {err.get('type')} {err.get('id')} {title!r}: {detail}", file=sys.stderr)
    if not result.get("success"):
        print(f"import failed: {len(errors)} object(s) not imported", file=sys.stderr)
        return 1
    return 0


def _ndjson_name(path: Path) -> str:
    # Kibana refuses any upload whose file name does not end in .ndjson.
    return path.name if path.suffix == ".ndjson" else f"{path.stem or 'streamapp'}.ndjson"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m streamapp.kibana", description="streamapp's Kibana dashboard"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    imp = sub.add_parser("import", help="import the dashboard and its objects into Kibana")
    imp.add_argument(
        "--file", type=Path, default=OBJECTS_FILE, help="NDJSON to import (default: packaged)"
    )
    imp.add_argument(
        "--no-wait", action="store_true", help="do not wait for /api/status to be available"
    )
    sub.add_parser("path", help="print the path of the packaged NDJSON file")
    dump = sub.add_parser("dump", help="print the NDJSON rewritten for the configured indices")
    dump.add_argument("--file", type=Path, default=OBJECTS_FILE)
    args = parser.parse_args(argv)

    if args.command == "path":
        print(OBJECTS_FILE)
        return 0
    if args.command == "dump":
        sys.stdout.write(to_ndjson(prepared_objects(args.file)).decode("utf-8"))
        return 0
    return run_import(args.file, wait=not args.no_wait)


if __name__ == "__main__":
    sys.exit(main())
