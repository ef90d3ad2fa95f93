"""A small synchronous client for the two Kibana APIs the import needs: status and import.

Synchronous on purpose: it runs as a one-shot CLI, never inside the worker's event loop.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from streamapp.kibana import KibanaSettings

FIRST_DELAY = 0.5
MAX_DELAY = 5.0


class KibanaError(Exception):
    """Kibana unreachable, not ready in time, or refusing a request."""


@dataclass
class Response:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def text(self, limit: int = 500) -> str:
        return self.body[:limit].decode("utf-8", "replace").strip()


class KibanaClient:
    def __init__(self, settings: KibanaSettings) -> None:
        self.settings = settings

    def _headers(self) -> dict[str, str]:
        s = self.settings
        # Kibana rejects API writes without kbn-xsrf (CSRF protection); harmless on reads.
        headers = {"kbn-xsrf": "true", "Accept": "application/json"}
        if s.api_key is not None:
            headers["Authorization"] = f"ApiKey {s.api_key.get_secret_value()}"
        elif s.username is not None and s.password is not None:
            pair = f"{s.username}:{s.password.get_secret_value()}".encode()
            headers["Authorization"] = f"Basic {base64.b64encode(pair).decode()}"
        return headers

    def request(
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """One HTTP request; any status is returned, network failures raise URLError/OSError."""
        req = urllib.request.Request(
            url, data=body, method=method, headers={**self._headers(), **(headers or {})}
        )
        try:
            with urllib.request.urlopen(req, timeout=self.settings.request_timeout) as resp:
                return Response(resp.status, resp.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return Response(exc.code, exc.read())

    def wait_until_ready(
        self, log: Callable[[str], None] = print, sleep: Callable[[float], None] = time.sleep
    ) -> int:
        """Poll `GET /api/status` until `status.overall.level` is "available"; return the number
        of attempts. Kibana answers 503 (and "Kibana server is not ready yet") while starting,
        so those, non-JSON answers and refused connections are retried with capped backoff
        until `wait_timeout`. 401/403 mean wrong credentials: no point in waiting."""
        s = self.settings
        started = time.monotonic()
        deadline = started + s.wait_timeout
        delay, attempts, last = FIRST_DELAY, 0, "no answer yet"
        while True:
            attempts += 1
            try:
                resp = self.request("GET", f"{s.url}/api/status")
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                last = f"cannot connect: {reason}"
            else:
                if resp.status in (401, 403):
                    raise KibanaError(
                        f"Kibana at {s.url} refused the credentials (HTTP {resp.status}): "
                        f"{resp.text(200)}. Check STREAMAPP_KIBANA_USERNAME/PASSWORD or "
                        "STREAMAPP_KIBANA_API_KEY."
                    )
                level = _overall_level(resp)
                if resp.status == 200 and level == "available":
                    return attempts
                last = f"HTTP {resp.status}, status {level or resp.text(120)!r}"
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise KibanaError(
                    f"Kibana at {s.url} was not available after {s.wait_timeout:g}s "
                    f"({attempts} attempts; last: {last}). Is it running, and is "
                    "STREAMAPP_KIBANA_URL right? Raise STREAMAPP_KIBANA_WAIT_TIMEOUT if it is "
                    "still starting."
                )
            if attempts == 1:
                log(
                    f"Kibana at {s.url} is not answering yet ({last}); waiting up to "
                    f"{s.wait_timeout:g}s (STREAMAPP_KIBANA_WAIT_TIMEOUT)"
                )
            elif attempts % 5 == 0:
                waited = time.monotonic() - started
                log(f"still waiting for Kibana: {waited:.0f}s of {s.wait_timeout:g}s ({last})")
            sleep(min(delay, remaining))
            delay = min(delay * 2, MAX_DELAY)

    def import_objects(self, ndjson: bytes, filename: str = "streamapp.ndjson") -> dict[str, Any]:
        """POST the objects to the saved objects import API, overwriting existing ones with the
        same ids (so a re-import updates the dashboard instead of duplicating it)."""
        boundary = f"----streamapp{uuid.uuid4().hex}"
        body = b"".join(
            [
                f"--{boundary}\r\n".encode(),
                f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'.encode(),
                b"Content-Type: application/ndjson\r\n\r\n",
                ndjson,
                f"\r\n--{boundary}--\r\n".encode(),
            ]
        )
        url = f"{self.settings.base}/api/saved_objects/_import?overwrite=true"
        try:
            resp = self.request(
                "POST",
                url,
                body,
                {"Content-Type": f"multipart/form-data; boundary={boundary}"},
            )
        except (urllib.error.URLError, OSError) as exc:
            raise KibanaError(f"import request to {url} failed: {exc}") from None
        if resp.status != 200:
            raise KibanaError(f"import refused by Kibana (HTTP {resp.status}): {resp.text()}")
        try:
            result = resp.json()
        except ValueError:
            raise KibanaError(f"import answer is not JSON: {resp.text()}") from None
        if not isinstance(result, dict) or "success" not in result:
            raise KibanaError(f"unexpected import answer: {resp.text()}")
        return result


def _overall_level(resp: Response) -> str | None:
    try:
        body = resp.json()
    except ValueError:
        return None
    try:
        return str(body["status"]["overall"]["level"])
    except (KeyError, TypeError):
        return None
