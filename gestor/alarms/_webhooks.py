"""Webhook delivery of alarms: HTTP POST of each alarm's JSON to every configured URL, from a
bounded queue, retried with backoff. Delivery is at least once (a receiver deduplicates by the
alarm `id`); what cannot be delivered after the retries is logged, and stays in the database and
on the websocket feed's replay."""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import attrs
import httpx
import msgspec
import trio

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
    _client: httpx.AsyncClient
    attempts: int = 5
    backoff: float = 0.5
    _send: trio.MemorySendChannel[bytes] = attrs.field(init=False)
    _recv: trio.MemoryReceiveChannel[bytes] = attrs.field(init=False)
    queue_size: int = 10_000
    _delivered: int = 0
    _failed: int = 0
    _dropped: int = 0

    def __attrs_post_init__(self) -> None:
        self._send, self._recv = trio.open_memory_channel[bytes](self.queue_size)

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
            try:
                response = await self._client.post(
                    url, content=body, headers={"Content-Type": "application/json"}
                )
                if response.status_code < 300:
                    self._delivered += 1
                    return
                why = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                why = type(exc).__name__
            if attempt < self.attempts:
                await trio.sleep(delay * (1 + random.random() / 2))
                delay = min(delay * 2, 30.0)
        self._failed += 1
        logger.error("webhook %s failed after %d attempts (%s)", url, self.attempts, why)

    def statistics(self) -> WebhookStatistics:
        return WebhookStatistics(
            queued=self._recv.statistics().current_buffer_used,
            delivered=self._delivered,
            failed=self._failed,
            dropped=self._dropped,
        )


@contextlib.asynccontextmanager
async def open_webhooks(urls: Sequence[str], *, request_timeout: float = 5.0, attempts: int = 5,
                        backoff: float = 0.5) -> AsyncIterator[Webhooks]:
    """Deliver events to `urls` until exit (what is still queued then is abandoned)."""
    async with httpx.AsyncClient(timeout=request_timeout) as client, \
            trio.open_nursery() as nursery:
        hooks = Webhooks(tuple(urls), client, attempts=attempts, backoff=backoff)
        await nursery.start(hooks.run)
        yield hooks
        nursery.cancel_scope.cancel()


__all__ = ["WebhookStatistics", "Webhooks", "open_webhooks"]
