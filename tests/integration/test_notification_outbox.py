"""The notifications outbox in PostgreSQL (migration 0014): the triggers queue one row per
(cause, channel, recipient) as the routes say, in the causing transaction; claims are shared
without overlap (SKIP LOCKED) and leased; an outcome is recorded only for the attempt that
holds the row."""

from __future__ import annotations

import trio

from gestor.model import NewAlarm, Severity
from gestor.store import RouteRow, open_store


async def test_routes_queue_one_row_per_alarm_and_recipient(database_url: str) -> None:
    with trio.fail_after(30):
        async with open_store(database_url) as store:
            await store.replace_notification_routes([
                RouteRow("alarm", "email", "a@op.example", "en", (), 2),
                RouteRow("alarm", "email", "a@op.example", "en", ("stuck",), 1),
                RouteRow("alarm", "email", "b@op.example", "es", ("stuck",), 1),
            ])
            critical = await store.raise_alarm(NewAlarm("refund_failed", Severity.CRITICAL, "x"))
            warning = await store.raise_alarm(NewAlarm("stuck", Severity.WARNING, "y"))
            await store.raise_alarm(NewAlarm("resolved", Severity.INFO, "z"))
            await store.raise_alarm(NewAlarm("platform_down", Severity.WARNING, "w"))
            rows = await store.notifications()
            # Replacing the routes replaces them: nothing routes any more.
            await store.replace_notification_routes([])
            await store.raise_alarm(NewAlarm("refund_failed", Severity.CRITICAL, "later"))
            assert len(await store.notifications()) == len(rows)
    assert sorted((r.alarm_id, r.recipient, r.language, r.event) for r in rows) == [
        (critical.id, "a@op.example", "en", "refund_failed"),
        (warning.id, "a@op.example", "en", "stuck"),
        (warning.id, "b@op.example", "es", "stuck"),
    ]
    assert {(r.channel, r.state, r.attempts) for r in rows} == {("email", "pending", 0)}


async def test_claims_do_not_overlap_are_leased_and_outcomes_need_the_attempt(
    database_url: str,
) -> None:
    with trio.fail_after(30):
        async with open_store(database_url) as store:
            assert await store.next_notification_due() is None  # nothing pending
            await store.replace_notification_routes([
                RouteRow("alarm", "email", f"op{i}@op.example", "en", (), 0) for i in range(6)])
            await store.raise_alarm(NewAlarm("stuck", Severity.WARNING, "y"))
            claimed: list[list[int]] = []

            async def claim() -> None:
                claimed.append([d.id for d in await store.claim_notifications(4, 60.0)])

            async with trio.open_nursery() as nursery:
                nursery.start_soon(claim)
                nursery.start_soon(claim)
            # Leased: claimed again by nobody until the lease runs out.
            assert await store.claim_notifications(10, 60.0) == []
            first = (await store.notifications())[0]
            assert first.attempts == 1
            assert not await store.finish_notification(first.id, 2, "sent")  # not its attempt
            assert await store.finish_notification(first.id, 1, "pending", retry_in=0.0,
                                                   error="boom")
            (again,) = await store.claim_notifications(10, 60.0)
            assert (again.id, again.attempts, again.last_error) == (first.id, 2, "boom")
            assert await store.finish_notification(again.id, 2, "sent", subject="s")
            assert not await store.finish_notification(again.id, 2, "failed")  # sent already
            done = (await store.notifications(state="sent"))
            due = await store.next_notification_due()
    everyone = sorted(i for ids in claimed for i in ids)
    assert len(everyone) == 6 and len(set(everyone)) == 6
    assert [(d.id, d.subject, d.last_error) for d in done] == [(first.id, "s", None)]
    assert due is not None and due > 30  # the other five are leased
