"""ASGI middleware in front of every endpoint: API key, body-size limit, bounded in-flight queue.

BentoML 1.4 accepts bodies of any size and queues requests without bound (its own
``max_concurrency`` answers 429 without ``Retry-After``), so these checks live here, before any
body is parsed:

* API key (optional): ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``, compared in constant
  time; health probes stay open so orchestrators can probe without secrets.
* Body limit: ``Content-Length`` checked first, then the bytes actually received (chunked
  uploads) -> 413.
* In-flight limit per process: requests beyond ``max_in_flight`` get 429 with ``Retry-After``
  immediately instead of waiting in an unbounded queue.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from radzoo.serving import metrics
from radzoo.serving.settings import ServeSettings

#: Probes that must answer without credentials and without taking an in-flight slot.
PROBE_PATHS = frozenset({"/livez", "/readyz", "/healthz"})
#: Static files of the browser page and of Swagger: open like the probes (they hold no data, and a
#: browser cannot send the key with a page load; the page sends it with every API call instead).
PUBLIC_PATHS = frozenset({"/", "/docs", "/docs.json", "/ui/app.js", "/ui/style.css"})
PUBLIC_PREFIXES = ("/static_content/",)
#: Paths that need the key (when set) but do no model work.
LIGHT_PATHS = frozenset({"/metrics", "/models", "/schema.json"})
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _json_response(status: int, kind: str, message: str, headers: list[tuple[bytes, bytes]] | None = None):
    body = json.dumps({"error": {"type": kind, "message": message, "status": status}}).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    head += headers or []

    async def respond(send: Any) -> None:
        await send({"type": "http.response.start", "status": status, "headers": head})
        await send({"type": "http.response.body", "body": body})

    return respond


def api_key_matches(headers: dict[bytes, bytes], key: str) -> bool:
    """Constant-time comparison of the request's key (either header) with the configured one."""
    expected = key.encode()
    given = headers.get(b"x-api-key")
    auth = headers.get(b"authorization", b"")
    if given is None and auth[:7].lower() == b"bearer ":
        given = auth[7:].strip()
    # compare even when absent, so timing does not reveal whether a header was sent
    return hmac.compare_digest(given or b"", expected) and given is not None


class RequestGuard:
    """Pure ASGI middleware (added with ``Service.add_asgi_middleware``)."""

    def __init__(self, app: Any, settings: ServeSettings | None = None) -> None:
        self.app = app
        self.settings = settings or ServeSettings.from_env()
        self.in_flight = 0  # touched only on the event loop thread

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in PROBE_PATHS or path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        if self.settings.api_key and not api_key_matches(headers, self.settings.api_key):
            metrics.rejected("unauthorized")
            await _json_response(
                401, "Unauthorized",
                "missing or wrong API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
                [(b"www-authenticate", b'Bearer realm="radzoo"')],
            )(send)
            return
        if scope["path"] in LIGHT_PATHS:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.settings.max_in_flight:
            metrics.rejected("overloaded")
            await _json_response(
                429, "Overloaded",
                f"server busy: {self.in_flight} requests in flight (limit {self.settings.max_in_flight}); retry later",
                [(b"retry-after", str(self.settings.retry_after_s).encode())],
            )(send)
            return
        self.in_flight += 1
        try:
            if scope.get("method", "GET") in BODY_METHODS:
                receive = await self._buffer_body(headers, receive, send)
                if receive is None:
                    return
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _buffer_body(self, headers: dict[bytes, bytes], receive: Any, send: Any) -> Any:
        """Read the body up to the limit; answer 413 (and return None) beyond it."""
        limit = self.settings.max_body_bytes
        declared = headers.get(b"content-length")
        too_large = (
            f"request body exceeds the server limit of {self.settings.max_body_mb:g} MB (RADZOO_MAX_BODY_MB)"
        )
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await _json_response(400, "InputError", "malformed Content-Length header")(send)
                return None
            if size > limit:
                metrics.rejected("too_large")
                await _json_response(413, "PayloadTooLargeError", f"{too_large}: Content-Length is {size} bytes")(send)
                return None
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > limit:
                metrics.rejected("too_large")
                await _json_response(413, "PayloadTooLargeError", f"{too_large}: received more than {limit} bytes")(send)
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        content_type = headers.get(b"content-type", b"application/json").split(b";")[0].strip().lower()
        if content_type == b"application/json" and body:
            # the framework's own parse error has another shape; answer in radzoo's
            try:
                json.loads(body)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                await _json_response(400, "InputError", f"malformed JSON body: {exc}")(send)
                return None
        # the body is handed over once and not kept: BentoML keeps the request (and so this
        # function) referenced from a context variable after the answer, on keep-alive
        # connections for many requests; holding the body here grew the server by its size per
        # request (benchmarks/bench_serving_soak.py)
        pending = [body]
        del body

        async def replay() -> dict[str, Any]:
            if pending:
                return {"type": "http.request", "body": pending.pop(), "more_body": False}
            return await receive()

        return replay
