"""`tcgen serve`'s HTTP server: uvicorn on h11, with what uvicorn leaves open.

Uvicorn times out a connection only while it idles between requests. A client that
connects and sends nothing, sends its headers a byte at a time, or declares a body it never
finishes, holds its connection (a file descriptor, buffers, and for a body an ASGI task
waiting in the app) for as long as it likes: 1,000 such connections stayed open. Here:
- a request's headers must arrive within TCGEN_HEADER_TIMEOUT_SECONDS of the connection
  opening (or of the previous response), else the connection is closed (408 if part of a
  request came);
- its body within TCGEN_BODY_TIMEOUT_SECONDS of its headers, else 408 and close; the app
  reads the whole body before a route runs, so a slow body never holds an engine slot;
- at most TCGEN_MAX_CONNECTIONS connections are open; one more gets 503 and is closed.
"""
from __future__ import annotations

import asyncio
import json
import logging

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from service.logs import LOG_CONFIG, log_event
from service.settings import Settings

log = logging.getLogger("tcgen.server")


def _raw_response(status: int, reason: str, detail: str, extra: str = "") -> bytes:
    body = json.dumps({"detail": detail}).encode()  # the same body as every other error's
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            f"{extra}connection: close\r\n\r\n").encode() + body


TOO_MANY = _raw_response(503, "Service Unavailable", "too many open connections (TCGEN_MAX_CONNECTIONS); retry later",
                         "retry-after: 1\r\n")
HEADERS_TOO_SLOW = _raw_response(408, "Request Timeout", "request headers not received in time "
                                 "(TCGEN_HEADER_TIMEOUT_SECONDS)")
BODY_TOO_SLOW = _raw_response(408, "Request Timeout", "request body not received in time (TCGEN_BODY_TIMEOUT_SECONDS)")


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a read deadline per request and a cap on connections.
    The limits are class attributes, set by `protocol_for(settings)`."""

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 512

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.deadline: asyncio.TimerHandle | None = None
        self.waiting_for: str | None = None  # "headers", "body", or None while the app answers
        self.partial = False  # bytes of the awaited request have come
        if len(self.connections) > self.max_connections:
            already = len(self.connections) - 1
            log_event(log, logging.WARNING, "connection.refused", f"connection refused: {already} open", open=already)
            self._close_with(TOO_MANY)
            return
        self._track()

    def data_received(self, data: bytes) -> None:
        self.partial = True
        super().data_received(data)

    def handle_events(self) -> None:
        super().handle_events()
        self._track()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._track()

    def connection_lost(self, exc: Exception | None) -> None:
        self._arm(None)
        super().connection_lost(exc)

    def _track(self) -> None:
        """Arm the deadline that fits where the client's request is, by h11's state of the
        client: IDLE (its headers are awaited), SEND_BODY (its body is), else the request
        is complete and the app has the time it needs."""
        if self.transport.is_closing():
            return
        state = self.conn.their_state
        waiting_for = "headers" if state is h11.IDLE else "body" if state is h11.SEND_BODY else None
        if waiting_for == self.waiting_for:
            return
        if waiting_for == "headers" and self.waiting_for is not None:
            self.partial = False  # a new request cycle
        self.waiting_for = waiting_for
        self._arm({"headers": self.header_timeout, "body": self.body_timeout}.get(waiting_for))

    def _arm(self, seconds: float | None) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
        self.deadline = None if seconds is None else self.loop.call_later(seconds, self._too_slow)

    def _too_slow(self) -> None:
        self.deadline = None
        if self.waiting_for == "headers":
            self._close_with(HEADERS_TOO_SLOW if self.partial else b"")  # nothing came: just close
            return
        if self.cycle is not None:
            if self.cycle.response_started:  # the app answered before reading the body: end it
                self.transport.close()
                return
            self.cycle.disconnected = True  # the app sees http.disconnect and writes nothing more
        self._close_with(BODY_TOO_SLOW)

    def _close_with(self, response: bytes) -> None:
        if not self.transport.is_closing():
            if response:
                self.transport.write(response)
            self.transport.close()


def protocol_for(settings: Settings) -> type[GuardedH11Protocol]:
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {
        "header_timeout": settings.header_timeout_seconds, "body_timeout": settings.body_timeout_seconds,
        "max_connections": settings.max_connections})


def serve(app, settings: Settings) -> None:
    """Run `app` until SIGINT/SIGTERM (uvicorn drains open requests for up to 30 s)."""
    config = uvicorn.Config(app, host=settings.host, port=settings.port, http=protocol_for(settings),
                            log_config=LOG_CONFIG, timeout_graceful_shutdown=30,
                            timeout_keep_alive=settings.keep_alive_seconds)
    uvicorn.Server(config).run()
