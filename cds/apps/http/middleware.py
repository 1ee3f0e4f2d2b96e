"""One ASGI middleware for every response: body size cap (413), security headers, an access log without patient data.

Pure ASGI (no per-request task or body copy beyond the cap check), so that it costs little
on the hot path. The access log names method, path, status and time; a report link's token
(a capability: whoever has it can read that report) is never logged.
"""

from __future__ import annotations

import json
import logging
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("cds.serve.access")

API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# the HTML report: inline styles and data: images only (the report itself says the same in a meta tag)
REPORT_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)

_TOKEN_PATH = re.compile(r"^/reports/[^/]+")


def _headers(path: str) -> list[tuple[bytes, bytes]]:
    csp = REPORT_CSP if path.startswith("/reports/") else API_CSP
    return [
        (b"content-security-policy", csp.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),  # a report URL is a capability: never pass it on
        (b"cross-origin-resource-policy", b"same-origin"),
        (b"cache-control", b"no-store"),  # patient data everywhere but discovery and healthz; no-store for all
    ]


def error_body(message: str, field: str | None = None) -> bytes:
    return json.dumps({"error": message, "field": field}, ensure_ascii=False).encode()


class ServiceMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int):
        self.app = app
        self.max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        path = scope.get("path", "")
        extra = _headers(path)
        status_seen = [0]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_seen[0] = message["status"]
                names = {k.lower() for k, _ in message.get("headers", [])}
                message = {**message, "headers": [*message.get("headers", []), *(h for h in extra if h[0] not in names)]}
            await send(message)

        try:
            declared = next((int(v) for k, v in scope.get("headers", []) if k == b"content-length"), None)
        except ValueError:
            declared = None
        if declared is not None and declared > self.max_body:
            await self._too_large(send_with_headers)
        else:
            body, complete = await self._read(receive)
            if not complete:
                await self._too_large(send_with_headers)
            else:
                await self.app(scope, _replay(body, receive), send_with_headers)
        access_log.info(
            "%s %s %d %.1f ms",
            scope.get("method"),
            _TOKEN_PATH.sub("/reports/…", path),
            status_seen[0],
            (time.perf_counter() - start) * 1000,
        )

    async def _read(self, receive: Receive) -> tuple[bytes, bool]:
        """The whole request body, or (partial, False) as soon as it exceeds the cap."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b"".join(chunks), True
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return b"", False
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), True

    async def _too_large(self, send: Send) -> None:
        body = error_body(f"the request body is larger than {self.max_body} bytes", "(body)")
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = [False]

    async def replay() -> Message:
        if not sent[0]:
            sent[0] = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
