"""ASGI middleware of the service: the API key gate, the request body's encoding and size
limit, which work on the raw request before FastAPI reads or parses any of its body, and
HEAD as GET."""
from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.deps import key_matches
from service.settings import Settings

# Served without the key: the probes, and FastAPI's schema and documentation pages (the
# schema is public anyway, checked in as openapi.yaml, and they run nothing).
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
KEY_MESSAGE = "missing or wrong API key (Authorization: Bearer <key> or X-API-Key)"
ENCODING_MESSAGE = ("Content-Encoding: {} is not accepted; only identity is: send the body uncompressed, "
                    "without Content-Encoding")


async def _send_json(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


class ApiKeyGate:
    """With TCGEN_API_KEY set, 401 for every path but PUBLIC_PATHS unless the request
    carries the key. The routes' own require_api_key dependency says the same in the
    schema; this gate answers first, so a keyless request is never parsed (a malformed body
    would otherwise get a 422 from a route it may not use)."""

    def __init__(self, app: ASGIApp, settings: Settings):
        self.app, self.settings = app, settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.settings.api_key is None or scope["path"] in PUBLIC_PATHS:
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        authorization = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, credentials = authorization.partition(" ")
        given = headers.get(b"x-api-key", b"").decode("latin-1") or (
            credentials.strip() if scheme.lower() == "bearer" else "")
        if key_matches(self.settings, given or None):
            return await self.app(scope, receive, send)
        await _send_json(send, 401, KEY_MESSAGE, [(b"www-authenticate", b"Bearer")])


class IdentityEncoding:
    """415 for a POST whose Content-Encoding is anything but identity: bodies are read as
    sent, never decompressed (a gzip body was answered 'not UTF-8 text')."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            codings = [c.strip().lower() for name, value in scope["headers"] if name == b"content-encoding"
                       for c in value.decode("latin-1").split(",") if c.strip()]
            if any(c != "identity" for c in codings):
                return await _send_json(send, 415, ENCODING_MESSAGE.format(", ".join(codings)))
        await self.app(scope, receive, send)


class BodyLimit:
    """413 for a body over `limit` bytes, by Content-Length or while it streams in (no
    request can make the server buffer more than that)."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await self._too_large(send)
        seen = 0

        async def limited() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge(self.limit)
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:  # read where no exception handler saw it
            await self._too_large(send)

    async def _too_large(self, send: Send) -> None:
        await _send_json(send, 413, _TooLarge(self.limit).detail)


class _TooLarge(HTTPException):
    """Raised from the body stream: an HTTPException, so that FastAPI, which answers 400 to
    any other error while it reads a body, passes it on to the exception handlers."""

    def __init__(self, limit: int):
        super().__init__(413, f"request body: larger than {limit} bytes (TCGEN_MAX_BODY_BYTES)")


class HeadAsGet:
    """HEAD on every GET route: the request runs as GET and its answer goes out with the
    same status and headers and no body, as soon as the headers are known. FastAPI's routes
    answer only the methods they declare (Starlette's own add HEAD to GET); declaring HEAD
    on each would double every GET operation of the schema. The server (uvicorn) drops a
    HEAD answer's body too; this does not rely on it, and stops a streamed body (an NDJSON
    job stream would otherwise run on until the job ends)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            return await self.app(scope, receive, send)
        as_get = {**scope, "method": "GET"}  # the server's scope keeps HEAD: it sends no body for it

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.start":
                if "route" in as_get:  # the route matched, for the request metrics' label
                    scope["route"] = as_get["route"]
                await send(message)
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            elif message["type"] == "http.response.body" and message.get("more_body"):
                raise _Sent  # a stream: stop making a body nobody reads

        try:
            await self.app(as_get, receive, headers_only)
        except _Sent:
            pass


class _Sent(Exception):
    """HeadAsGet has answered; raised into the streaming response that was still going."""
