"""Notifications by several means, end to end: alarms e-mailed to operators through a real SMTP
server (aiosmtpd, started by the test), texts to subscribers through the simulator's SMS
gateway over HTTP, the outbox in a real PostgreSQL. Each test asserts what the receivers got
(exactly one message per alarm or event and recipient, in the right language) and the
outbox's rows (state, attempts, last error)."""

from __future__ import annotations

import email.policy
import socket
import uuid
from collections.abc import AsyncIterator
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
from aiosmtpd.controller import Controller

from gestor.api import GestorApp, create_app
from gestor.metrics import NOTIFICATIONS
from gestor.model import NewAlarm, Severity
from gestor.notify import Deliverer, NotificationSettings
from gestor.settings import Settings, load_settings
from gestor.simulator import SimulatorHandle
from tests.integration.conftest import ADMIN_KEY, set_faults
from tests.integration.test_api import buy

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
OPERATORS = ["noc@operator.example", "oncall@operator.example"]
#: Lines of the test simulator (seed 7) whose data-warehouse language is `en` / `es`.
ENGLISH = "5491100000019"
SPANISH = "5491100000001"
BONO = "SMS_200_30D"


@attrs.define
class Inbox:
    """What the SMTP server received: (envelope recipients, parsed message)."""

    token: trio.lowlevel.TrioToken
    messages: list[tuple[list[str], EmailMessage]] = attrs.field(factory=list)
    _arrived: trio.Event = attrs.field(factory=trio.Event)

    def add(self, rcpt: list[str], message: EmailMessage) -> None:
        self.messages.append((rcpt, message))
        self._arrived.set()
        self._arrived = trio.Event()

    async def wait_for(self, count: int) -> None:
        while len(self.messages) < count:
            await self._arrived.wait()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd
        parsed = BytesParser(policy=email.policy.default).parsebytes(envelope.content)
        assert isinstance(parsed, EmailMessage)
        self.token.run_sync_soon(self.add, list(envelope.rcpt_tos), parsed)
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
async def smtp() -> AsyncIterator[tuple[Inbox, int]]:
    """A real SMTP server on loopback (aiosmtpd, in its own thread)."""
    inbox = Inbox(trio.lowlevel.current_trio_token())
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    await trio.to_thread.run_sync(controller.start)
    try:
        yield inbox, port
    finally:
        await trio.to_thread.run_sync(controller.stop)


def notification_settings(smtp_port: int, **top: Any) -> NotificationSettings:
    return NotificationSettings.from_mapping({
        "retry_backoff": 0.05, "retry_backoff_max": 0.2, "attempt_timeout": 10.0,
        "poll_interval": 0.5, **top,
        "email": {"operators": OPERATORS, "smtp_host": "127.0.0.1", "smtp_port": smtp_port,
                  "from": "gestor@operator.example"},
        "routes": [{"channel": "email", "min_severity": "critical",
                    "kinds": ["refund_failed", "charge_unknown", "provision_unknown"]}],
    })


def settings_for(config_dir: Path, tmp_path: Path, notifications: NotificationSettings
                 ) -> Settings:
    base = load_settings(config_dir, environ={}, data_dir=tmp_path)
    return attrs.evolve(base, platforms={**base.platforms, "timeout": 1.0, "retries": 0},
                        admin_key=ADMIN_KEY, notifications=notifications)


@pytest.fixture
def notifications(smtp: tuple[Inbox, int]) -> NotificationSettings:
    return notification_settings(smtp[1])


@pytest.fixture
async def app(database_url: str, simulator: SimulatorHandle, config_dir: Path, tmp_path: Path,
              notifications: NotificationSettings) -> AsyncIterator[GestorApp]:
    application = create_app(settings_for(config_dir, tmp_path, notifications), database_url,
                             simulator.url)
    async with application.test_app():
        yield application


def deliverer(app: GestorApp) -> Deliverer:
    notifier = app.runtime.notifier
    assert notifier is not None
    return notifier


async def sms_to(control: httpx.AsyncClient, msisdn: str) -> list[dict[str, Any]]:
    response = await control.get("/control/sms", params={"to": msisdn})
    assert response.status_code == 200
    messages: list[dict[str, Any]] = response.json()["messages"]
    return messages


async def listed(client: Any, query: str = "") -> dict[str, Any]:
    response = await client.get(f"/v1/admin/notifications{query}", headers=ADMIN)
    assert response.status_code == 200, await response.get_data()
    body: dict[str, Any] = await response.get_json()
    return body


async def test_an_alarm_is_emailed_once_to_each_operator_and_its_subscriber_texted(
    app: GestorApp, client: Any, control: httpx.AsyncClient, smtp: tuple[Inbox, int],
) -> None:
    inbox, _port = smtp
    with trio.fail_after(60):
        await set_faults(control, {"prov": {"error_rate": 1.0}, "ocs.refund": {"error_rate": 1.0}})
        tx = await (await buy(client, SPANISH, BONO, wait=10)).get_json()
        assert tx["state"] == "inconsistent"
        alarms = await app.runtime.store.alarms_after(0)
        (alarm,) = [a for a in alarms if a.kind == "refund_failed"]
        # Two e-mails (one per operator) and one text to the subscriber.
        await inbox.wait_for(2)
        await deliverer(app).wait_outcomes(3)
        # Raised again while open: the same alarm, no new delivery.
        again = await app.runtime.alarms.raise_alarm(NewAlarm(
            "refund_failed", Severity.CRITICAL, "again", msisdn=SPANISH,
            transaction_id=uuid.UUID(tx["id"])))
        assert again.id == alarm.id
        assert await deliverer(app).deliver_due() == 0

    mails = [(rcpt, m) for rcpt, m in inbox.messages if f"#{alarm.id}:" in m["Subject"]]
    assert sorted(r for rcpt, _ in mails for r in rcpt) == sorted(OPERATORS)
    assert len(inbox.messages) == 2  # nothing else was critical and routed
    for _rcpt, mail in mails:
        assert mail["Subject"].startswith(f"[Gestor] CRITICAL refund_failed #{alarm.id}: ")
        assert mail["From"] == "gestor@operator.example"
        body = mail.get_content()
        assert tx["id"] in body and SPANISH in body and alarm.message in body
    texts = await sms_to(control, SPANISH)
    assert len(texts) == 1
    assert texts[0]["text"].startswith("Hubo un problema con tu compra de 200 SMS")
    assert tx["id"][:8] in texts[0]["text"]

    by_alarm = (await listed(client, f"?alarm_id={alarm.id}"))["notifications"]
    assert sorted(n["recipient"] for n in by_alarm) == sorted(OPERATORS)
    assert {(n["channel"], n["state"], n["attempts"]) for n in by_alarm} == {("email", "sent", 1)}
    assert all(n["subject"].startswith("[Gestor] CRITICAL") and n["sent_at"] for n in by_alarm)
    by_tx = (await listed(client, f"?transaction_id={tx['id']}&channel=sms"))["notifications"]
    assert [(n["recipient"], n["language"], n["state"]) for n in by_tx] == [
        (SPANISH, "es", "sent")]


async def test_a_refund_texts_the_subscriber_once_in_their_language(
    app: GestorApp, client: Any, control: httpx.AsyncClient, smtp: tuple[Inbox, int],
) -> None:
    inbox, _port = smtp
    with trio.fail_after(60):
        await set_faults(control, {"prov": {"error_rate": 1.0}})
        english = await (await buy(client, ENGLISH, BONO, wait=10)).get_json()
        spanish = await (await buy(client, SPANISH, BONO, wait=10)).get_json()
        assert english["state"] == spanish["state"] == "refunded"
        await deliverer(app).wait_outcomes(2)
        assert await deliverer(app).deliver_due() == 0
    (en,) = await sms_to(control, ENGLISH)
    assert en["text"] == (f"We could not complete your purchase of 200 SMS for 30 days. "
                          f"{english['price'] // 100}.{english['price'] % 100:02d} ARS was "
                          f"returned to your balance. Ref. {english['id'][:8]}")
    (es,) = await sms_to(control, SPANISH)
    assert es["text"].startswith("No pudimos completar tu compra de 200 SMS for 30 days. "
                                 "Te devolvimos ")
    rows = (await listed(client, "?channel=sms"))["notifications"]
    assert {(r["recipient"], r["language"], r["state"]) for r in rows} == {
        (ENGLISH, "en", "sent"), (SPANISH, "es", "sent")}
    assert inbox.messages == []  # a refund raises no alarm worth an e-mail


async def test_a_delivery_failing_twice_then_succeeding_is_sent_once(
    app: GestorApp, client: Any, control: httpx.AsyncClient,
) -> None:
    before = dict(NOTIFICATIONS.series)
    with trio.fail_after(60):
        assert (await control.put("/control/sms", json={"fail_next": 2})).status_code == 200
        await set_faults(control, {"prov": {"error_rate": 1.0}})
        tx = await (await buy(client, ENGLISH, BONO, wait=10)).get_json()
        assert tx["state"] == "refunded"
        await deliverer(app).wait_outcomes(3)
    (row,) = (await listed(client, f"?transaction_id={tx['id']}"))["notifications"]
    assert (row["state"], row["attempts"], row["last_error"]) == ("sent", 3, None)
    assert len(await sms_to(control, ENGLISH)) == 1
    stats = (await control.get("/control/stats")).json()
    assert stats["requests_by_op"]["sms.send"] == 3 and stats["sms_sent"] == 1
    statistics = await (await client.get("/v1/admin/statistics", headers=ADMIN)).get_json()
    assert statistics["notifications"] == {"sent": 1, "retried": 2, "failed": 0,
                                           "superseded": 0}
    moved = {k: v - before.get(k, 0) for k, v in NOTIFICATIONS.series.items()}
    assert (moved[("sms", "retry")], moved[("sms", "sent")]) == (2, 1)


@pytest.fixture
def bounded(smtp: tuple[Inbox, int]) -> NotificationSettings:
    return notification_settings(smtp[1], max_attempts=2)


async def test_a_delivery_that_keeps_failing_is_failed_and_listed(
    database_url: str, simulator: SimulatorHandle, config_dir: Path, tmp_path: Path,
    control: httpx.AsyncClient, bounded: NotificationSettings,
) -> None:
    app = create_app(settings_for(config_dir, tmp_path, bounded), database_url, simulator.url)
    with trio.fail_after(60):
        async with app.test_app():
            client = app.test_client()
            await control.put("/control/sms", json={"fail_next": 5})
            await set_faults(control, {"prov": {"error_rate": 1.0}})
            tx = await (await buy(client, SPANISH, BONO, wait=10)).get_json()
            await deliverer(app).wait_outcomes(2)
            (row,) = (await listed(client, "?state=failed"))["notifications"]
            assert (await listed(client, "?state=pending"))["notifications"] == []
            assert deliverer(app).statistics().failed == 1
    assert row["transaction_id"] == tx["id"] and row["attempts"] == 2
    assert "503" in row["last_error"]
    assert await sms_to(control, SPANISH) == []


@pytest.fixture
def unreachable_gateway(smtp: tuple[Inbox, int]) -> NotificationSettings:
    settings = notification_settings(smtp[1], retry_backoff=0.3, retry_backoff_max=0.3)
    return attrs.evolve(settings, sms=attrs.evolve(settings.sms,
                                                   url=f"http://127.0.0.1:{_free_port()}"))


async def test_a_pending_delivery_is_sent_by_the_next_process(
    database_url: str, simulator: SimulatorHandle, config_dir: Path, tmp_path: Path,
    control: httpx.AsyncClient, unreachable_gateway: NotificationSettings,
    notifications: NotificationSettings,
) -> None:
    """The first process cannot reach the gateway and stops with the text still pending; the
    next one, started on the same database, sends it (once)."""
    first = create_app(settings_for(config_dir, tmp_path, unreachable_gateway), database_url,
                       simulator.url)
    with trio.fail_after(60):
        async with first.test_app():
            client = first.test_client()
            await set_faults(control, {"prov": {"error_rate": 1.0}})
            tx = await (await buy(client, ENGLISH, BONO, wait=10)).get_json()
            assert tx["state"] == "refunded"
            await deliverer(first).wait_outcomes(1)
            (row,) = (await listed(client))["notifications"]
            assert (row["state"], row["attempts"]) == ("pending", 1)
            assert "unreachable" in row["last_error"]
        assert await sms_to(control, ENGLISH) == []
        second = create_app(settings_for(config_dir, tmp_path, notifications), database_url,
                            simulator.url)
        async with second.test_app():
            await deliverer(second).wait_outcomes(1)
            (row,) = (await listed(second.test_client()))["notifications"]
    assert (row["state"], row["attempts"], row["last_error"]) == ("sent", 2, None)
    (text,) = await sms_to(control, ENGLISH)
    assert text["text"].startswith("We could not complete your purchase of 200 SMS for 30 days.")


@pytest.mark.parametrize(("query", "field"), [
    ("?state=lost", "state"), ("?channel=fax", "channel"), ("?alarm_id=x1", "alarm_id"),
    ("?alarm_id=0", "alarm_id"), ("?transaction_id=nope", "transaction_id"),
    ("?since=-1", "since"), ("?limit=0", "limit"), ("?limit=1001", "limit"),
])
async def test_bad_filters_are_422_naming_the_field(client: Any, query: str, field: str) -> None:
    with trio.fail_after(30):
        response = await client.get(f"/v1/admin/notifications{query}", headers=ADMIN)
        assert response.status_code == 422
        assert response.content_type == "application/problem+json"
        assert (await response.get_json())["field"] == field


async def test_the_listing_pages_by_id_and_needs_an_operator_key(
    app: GestorApp, client: Any, control: httpx.AsyncClient,
) -> None:
    with trio.fail_after(60):
        assert (await client.get("/v1/admin/notifications")).status_code == 401
        await set_faults(control, {"prov": {"error_rate": 1.0}})
        for msisdn in (ENGLISH, SPANISH, "5491100000002"):
            assert (await (await buy(client, msisdn, BONO, wait=10)).get_json())["state"] \
                == "refunded"
        await deliverer(app).wait_outcomes(3)
        first = await listed(client, "?limit=2")
        assert len(first["notifications"]) == 2 and first["next"]
        second = await listed(client, first["next"].removeprefix("/v1/admin/notifications"))
    ids = [n["id"] for n in first["notifications"] + second["notifications"]]
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert second["next"] is None

