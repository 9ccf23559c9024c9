"""Webhook delivery of alarms: HTTP POST of each alarm's JSON to every configured URL, from a
bounded queue, retried with backoff. Delivery is at least once (a receiver deduplicates by the
alarm `id`); what cannot be delivered after the retries is logged, and stays in the database and
on the websocket feed's replay.

Sent through the HTTP/1.1 client of `gestor.platforms` (http and https), each attempt bounded by
`request_timeout`, at most `max_concurrency` at once (httpx's pool bounded them so before).
Receivers commonly close idle connections after ~5 s, and alarms are rare: a connection is kept
for the next alarm only `keepalive_expiry` seconds."""

from __future__ import annotations

import contextlib
import logging
import random
import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import attrs
import msgspec
import trio

from gestor.platforms import HTTPClient, HTTPError

logger = logging.getLogger("gestor.webhooks")


@attrs.frozen
class WebhookStatistics:
    queued: int
    delivered: int
    failed: int
    dropped: int


@attrs.define
class Webhooks:
    urls: tuple[str, ...]
    _client: HTTPClient
    attempts: int = 5
    backoff: float = 0.5
    request_timeout: float = 5.0  # seconds, per attempt
    max_concurrency: int = 100  # attempts in flight at once
    _limiter: trio.CapacityLimiter = attrs.field(init=False)
    _send: trio.MemorySendChannel[bytes] = attrs.field(init=False)
    _recv: trio.MemoryReceiveChannel[bytes] = attrs.field(init=False)
    queue_size: int = 10_000
    _delivered: int = 0
    _failed: int = 0
    _dropped: int = 0

    def __attrs_post_init__(self) -> None:
        self._send, self._recv = trio.open_memory_channel[bytes](self.queue_size)
        self._limiter = trio.CapacityLimiter(self.max_concurrency)

    def send_nowait(self, event: Mapping[str, Any]) -> None:
        """Queue one event for every URL; drops (and counts) it if the queue is full."""
        if not self.urls:
            return
        try:
            self._send.send_nowait(msgspec.json.encode(event))
        except trio.WouldBlock:
            self._dropped += 1
            logger.error("webhook queue full: alarm %s not sent by webhook", event.get("id"))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async with trio.open_nursery() as nursery:
            async for body in self._recv:
                for url in self.urls:
                    nursery.start_soon(self._deliver, url, body)

    async def _deliver(self, url: str, body: bytes) -> None:
        delay = self.backoff
        for attempt in range(1, self.attempts + 1):
            why = await self._attempt(url, body)
            if why is None:
                self._delivered += 1
                return
            if attempt < self.attempts:
                await trio.sleep(delay * (1 + random.random() / 2))
                delay = min(delay * 2, 30.0)
        self._failed += 1
        logger.error("webhook %s failed after %d attempts (%s)", url, self.attempts, why)

    async def _attempt(self, url: str, body: bytes) -> str | None:
        """One POST: None once a 2xx answers it, else why not."""
        async with self._limiter:
            with trio.move_on_after(self.request_timeout):
                try:
                    response = await self._client.request(
                        "POST", url, content=body, headers=_HEADERS
                    )
                except (HTTPError, ValueError) as exc:  # ValueError: a URL it cannot use
                    return type(exc).__name__
                return None if response.status < 300 else f"HTTP {response.status}"
        return f"no answer within {self.request_timeout:g} s"

    def statistics(self) -> WebhookStatistics:
        return WebhookStatistics(
            queued=self._recv.statistics().current_buffer_used,
            delivered=self._delivered,
            failed=self._failed,
            dropped=self._dropped,
        )


_HEADERS = (("content-type", "application/json"),)


@contextlib.asynccontextmanager
async def open_webhooks(
    urls: Sequence[str],
    *,
    request_timeout: float = 5.0,
    attempts: int = 5,
    backoff: float = 0.5,
    keepalive_expiry: float = 4.0,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[Webhooks]:
    """Deliver events to `urls` until exit (what is still queued then is abandoned). https URLs
    are checked against `ssl_context` (default: the system's trust store, which `SSL_CERT_FILE`
    can replace)."""
    client = HTTPClient(keepalive_expiry=keepalive_expiry, max_idle=8, ssl_context=ssl_context)
    async with client, trio.open_nursery() as nursery:
        hooks = Webhooks(
            tuple(urls), client, attempts=attempts, backoff=backoff,
            request_timeout=request_timeout,
        )
        await nursery.start(hooks.run)
        yield hooks
        nursery.cancel_scope.cancel()


__all__ = ["WebhookStatistics", "Webhooks", "open_webhooks"]
