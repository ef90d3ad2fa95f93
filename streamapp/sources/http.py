"""HTTP plumbing shared by the sources built on `requests`-based client libraries."""

from __future__ import annotations

from typing import Any

import requests


class RebasingSession(requests.Session):
    """Sends requests meant for `origin` (a client library's hard-coded host) to `base_url`.

    tweepy and newsapi-python hard-code their API hosts but accept (or expose) a
    `requests.Session`; this is the one seam used to point them at a proxy or a test server.
    """

    def __init__(self, origin: str, base_url: str) -> None:
        super().__init__()
        self.origin = origin.rstrip("/")
        self.base_url = base_url.rstrip("/")

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        if (
            isinstance(url, str)
            and self.base_url != self.origin
            and (url == self.origin or url.startswith(self.origin + "/"))
        ):
            url = self.base_url + url[len(self.origin) :]
        return super().request(method, url, *args, **kwargs)  # type: ignore[arg-type]
