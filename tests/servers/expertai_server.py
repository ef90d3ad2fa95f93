"""A local stand-in for the Expert.ai NL API v2 and its token endpoint, speaking their wire format.

- `POST /oauth2/token` with JSON `{"username", "password"}` answers a plain-text JWT
  (`header.payload.signature`, base64url; `exp` = now + `token_ttl`), or 401 for wrong
  credentials. `fail_token_next(status, times)` scripts errors (e.g. 503).
- `POST /v2/analyze/standard/{lang}/sentiment` and `POST /v2/detect/hate-speech/{lang}` with
  `{"document": {"text"}}` and `Authorization: Bearer <jwt>`: 401 for an unknown, revoked
  (`revoke_tokens()`) or expired token; 413 for a text over `max_bytes` of UTF-8; otherwise
  `{"success": true, "data": {...}}` computed from the text by the rules below. Errors are
  `{"success": false, "errors": [{"code", "message"}]}`.
- Rules, deterministic: sentiment `overall` is the number after `overall=` when the text has one
  (e.g. "overall=40"), else +25 per word of POSITIVE and -25 per word of NEGATIVE, clamped to
  +/-100. Each word of HATE_WORDS yields its taxonomy category (score 10 per occurrence) and each
  `@name` becomes a `target` field of an extraction. A text containing `[[fail]]` gets a
  `success: false` answer (HTTP 200), one containing `[[503]]` always gets 503.
- `fail_next(status, times, retry_after=...)` scripts the next API answers (whatever the path).
- `delay` holds every API answer that long; `in_flight` / `max_in_flight` count API requests
  being handled at once. Every request is recorded (`requests`) for assertions.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from aiohttp import web

LANGUAGES = {"de", "en", "es", "fr", "it"}
POSITIVE = {"good", "great", "love", "happy", "wonderful", "excellent"}
NEGATIVE = {"bad", "awful", "sad", "terrible", "angry", "worst"}
# id -> (label, hierarchy), Expert.ai's hate-speech taxonomy.
CATEGORIES: dict[str, tuple[str, list[str]]] = {
    "1000": ("Personal Insult", ["Personal Insult"]),
    "2100": ("Racism", ["Discrimination and Harassment", "Racism"]),
    "2200": ("Sexism", ["Discrimination and Harassment", "Sexism"]),
    "2300": ("Ableism", ["Discrimination and Harassment", "Ableism"]),
    "2400": ("Religious Hatred", ["Discrimination and Harassment", "Religious Hatred"]),
    "2500": ("Homophobia", ["Discrimination and Harassment", "Homophobia"]),
    "2600": ("Classism", ["Discrimination and Harassment", "Classism"]),
    "2700": ("Body Shaming", ["Discrimination and Harassment", "Body Shaming"]),
    "3000": ("Threat and Violence", ["Threat and Violence"]),
}
HATE_WORDS = {
    "idiot": "1000",
    "moron": "1000",
    "racist": "2100",
    "sexist": "2200",
    "ableist": "2300",
    "bigot": "2400",
    "homophobe": "2500",
    "snob": "2600",
    "fatso": "2700",
    "kill": "3000",
}


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON, or the raw text when it is not JSON


@dataclass
class Scripted:
    status: int
    retry_after: str | None = None
    body: Any = None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(claims: dict[str, Any]) -> str:
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(claims).encode())
    return f"{header}.{payload}.{_b64(secrets.token_bytes(32))}"


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"success": False, "errors": [{"code": code, "message": message}]}


class ExpertAiServer:
    def __init__(
        self,
        *,
        username: str = "tester@example.com",
        password: str = "correct horse battery staple",
        token_ttl: float = 86_400.0,
        max_bytes: int = 10_240,
        delay: float = 0.0,
        token_delay: float = 0.0,
    ) -> None:
        self.username = username
        self.password = password
        self.token_ttl = token_ttl
        self.max_bytes = max_bytes
        self.delay = delay
        self.token_delay = token_delay
        self.tokens: dict[str, float] = {}  # token -> exp
        self.requests: list[Request] = []
        self.scripted: deque[Scripted] = deque()
        self.token_scripted: deque[int] = deque()
        self.in_flight = 0
        self.max_in_flight = 0
        self._runner: web.AppRunner | None = None
        self._port = 0

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> ExpertAiServer:
        app = web.Application()
        app.router.add_post("/oauth2/token", self._token)
        app.router.add_post("/v2/analyze/standard/{lang}/sentiment", self._sentiment)
        app.router.add_post("/v2/detect/hate-speech/{lang}", self._hate)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def token_url(self) -> str:
        return f"{self.url}/oauth2/token"

    @property
    def api_url(self) -> str:
        return f"{self.url}/v2"

    # -- scripting and inspection -------------------------------------------------------------

    def fail_next(
        self, status: int, times: int = 1, *, retry_after: str | None = None, body: Any = None
    ) -> None:
        """Answer the next `times` API requests with `status` (and `Retry-After`, `body`)."""
        self.scripted.extend(Scripted(status, retry_after, body) for _ in range(times))

    def fail_token_next(self, status: int, times: int = 1) -> None:
        self.token_scripted.extend([status] * times)

    def revoke_tokens(self) -> None:
        """Forget every issued token, as after a server-side revocation."""
        self.tokens.clear()

    def api_requests(self, kind: str = "") -> list[Request]:
        """API requests (not token ones) whose path contains `kind` ("sentiment", "hate")."""
        return [r for r in self.requests if r.path.startswith("/v2/") and kind in r.path]

    def token_requests(self) -> list[Request]:
        return [r for r in self.requests if r.path == "/oauth2/token"]

    # -- handlers -----------------------------------------------------------------------------

    async def _record(self, request: web.Request) -> Request:
        raw = await request.text()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw
        rec = Request(request.path, dict(request.headers), body)
        self.requests.append(rec)
        return rec

    async def _token(self, request: web.Request) -> web.StreamResponse:
        rec = await self._record(request)
        if self.token_delay:
            await asyncio.sleep(self.token_delay)
        if self.token_scripted:
            return web.Response(status=self.token_scripted.popleft(), text="Service unavailable")
        body = rec.body if isinstance(rec.body, dict) else {}
        if body.get("username") != self.username or body.get("password") != self.password:
            return web.Response(status=401, text="Unauthorized")
        exp = int(time.time() + self.token_ttl)
        token = make_jwt({"sub": self.username, "exp": exp, "iat": int(time.time())})
        self.tokens[token] = exp
        return web.Response(text=token, content_type="text/plain")

    async def _sentiment(self, request: web.Request) -> web.StreamResponse:
        return await self._api(request, _sentiment_data)

    async def _hate(self, request: web.Request) -> web.StreamResponse:
        return await self._api(request, _hate_data)

    async def _api(self, request: web.Request, compute: Any) -> web.StreamResponse:
        rec = await self._record(request)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            return self._answer(request, rec, compute)
        finally:
            self.in_flight -= 1

    def _answer(self, request: web.Request, rec: Request, compute: Any) -> web.StreamResponse:
        auth = rec.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
        exp = self.tokens.get(token)
        if exp is None or exp <= time.time():
            return web.json_response(
                error_body("UNAUTHORIZED", "invalid or expired token"), status=401
            )
        if self.scripted:
            s = self.scripted.popleft()
            headers = {"Retry-After": s.retry_after} if s.retry_after is not None else None
            body = s.body if s.body is not None else error_body(str(s.status), "scripted failure")
            return web.json_response(body, status=s.status, headers=headers)
        lang = request.match_info["lang"]
        if lang not in LANGUAGES:
            return web.json_response(
                error_body("LANGUAGE_NOT_SUPPORTED", f"language {lang} is not supported")
            )
        doc = rec.body.get("document") if isinstance(rec.body, dict) else None
        text = doc.get("text") if isinstance(doc, dict) else None
        if not isinstance(text, str):
            return web.json_response(
                error_body("BAD_REQUEST", "document.text is required"), status=400
            )
        if len(text.encode("utf-8")) > self.max_bytes:
            return web.json_response(
                error_body("REQUEST_ENTITY_TOO_LARGE", "document exceeds 10KB"), status=413
            )
        if "[[503]]" in text:
            return web.json_response(error_body("SERVICE_UNAVAILABLE", "try later"), status=503)
        if "[[fail]]" in text:
            return web.json_response(
                error_body("PREPARE_DOCUMENT_FAILED", "the document could not be analysed")
            )
        return web.json_response({"success": True, "data": {"content": text, **compute(text)}})


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def _sentiment_data(text: str) -> dict[str, Any]:
    forced = re.search(r"overall=(-?\d+(?:\.\d+)?)", text)
    words = _words(text)
    pos = 25.0 * sum(w in POSITIVE for w in words)
    neg = -25.0 * sum(w in NEGATIVE for w in words)
    overall = float(forced.group(1)) if forced else max(-100.0, min(100.0, pos + neg))
    items = [
        {"lemma": w, "sentiment": 25.0 if w in POSITIVE else -25.0, "items": []}
        for w in words
        if w in POSITIVE or w in NEGATIVE
    ]
    return {
        "language": "en",
        "sentiment": {
            "overall": overall,
            "positivity": min(100.0, pos),
            "negativity": max(-100.0, neg),
            "items": items,
        },
    }


def _hate_data(text: str) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for w in _words(text):
        if w in HATE_WORDS:
            counts[HATE_WORDS[w]] = counts.get(HATE_WORDS[w], 0) + 1
    total = sum(counts.values()) or 1
    best = max(counts.values(), default=0)
    categories = [
        {
            "namespace": "hate_speech_detection",
            "id": cid,
            "label": CATEGORIES[cid][0],
            "hierarchy": CATEGORIES[cid][1],
            "score": 10 * n,
            "frequency": round(100.0 * n / total, 2),
            "winner": n == best,
            "positions": [],
        }
        for cid, n in counts.items()
    ]
    mentions = re.findall(r"@\w+", text)
    extractions = [
        {
            "namespace": "hate_speech_detection",
            "template": CATEGORIES[cid][0].replace(" ", ""),
            "fields": [
                *({"name": "target", "value": m, "positions": []} for m in mentions),
                {"name": "hate_type", "value": CATEGORIES[cid][0], "positions": []},
            ],
        }
        for cid in counts
    ]
    return {"language": "en", "categories": categories, "extractions": extractions}
