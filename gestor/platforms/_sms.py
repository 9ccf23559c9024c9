"""The operator's SMS gateway: `POST {url}/sms/messages {to, text, id}`, idempotent by `id` (a
retry of a message the gateway already took is answered with that message and sends nothing).
The contract is in ``gestor/simulator/README.md``; the simulator plays it (platform ``sms``).

No retries or circuit here: the notifications outbox (``gestor.notify``) retries with backoff
and keeps every attempt's outcome."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import attrs
import trio

from ._http import HTTPClient, HTTPError

__all__ = ["SmsGateway", "SmsRefused", "SmsUnavailable", "open_sms_gateway"]


class SmsUnavailable(Exception):
    """No answer, or one that says "not now" (5xx, 408, 429): try again later."""


class SmsRefused(Exception):
    """The gateway refused the message for good (another 4xx): retrying cannot change it."""


_RETRYABLE_4XX = frozenset({408, 425, 429})


@attrs.define
class SmsGateway:
    """Sends text messages through the gateway at `url` (no trailing slash)."""

    url: str
    _http: HTTPClient
    timeout: float = 5.0  # seconds, per attempt

    async def send(self, to: str, text: str, message_id: str) -> None:
        """Send `text` to `to` once, whatever the retries (the gateway deduplicates by
        `message_id`). Raises :class:`SmsUnavailable` or :class:`SmsRefused`."""
        body = {"to": to, "text": text, "id": message_id}
        with trio.move_on_after(self.timeout):
            try:
                response = await self._http.request("POST", f"{self.url}/sms/messages",
                                                    json=body)
            except HTTPError as exc:
                raise SmsUnavailable(f"SMS gateway unreachable: {exc}") from None
            if response.status < 300:
                return
            detail = response.text[:200]
            if 400 <= response.status < 500 and response.status not in _RETRYABLE_4XX:
                raise SmsRefused(f"SMS gateway refused it: HTTP {response.status} {detail}")
            raise SmsUnavailable(f"SMS gateway answered HTTP {response.status} {detail}")
        raise SmsUnavailable(f"SMS gateway: no answer within {self.timeout:g} s")


@contextlib.asynccontextmanager
async def open_sms_gateway(url: str, *, attempt_timeout: float = 5.0
                           ) -> AsyncIterator[SmsGateway]:
    """A client of the SMS gateway at `url` until exit, each message given `attempt_timeout`
    seconds."""
    async with HTTPClient(keepalive_expiry=4.0, max_idle=4) as client:
        yield SmsGateway(url.rstrip("/"), client, attempt_timeout)
