"""The recoverer: resumes every non-terminal transaction that nobody is driving (DESIGN D4).

Every worker runs one. Each pass leases a batch of transactions untouched for `stale_after`
seconds (a live saga writes far more often than that), so after a crash, or when another worker
died, each orphan is resumed exactly where its last durable state left it, whatever its kind:

- `received` (nothing durable since acceptance): ask the platforms whether its first step
  happened, by the step's key (`step_id`). Nothing → `failed` (nothing moved). A purchase's
  debit → `charged`, then on as below; a top-up's recovery debit → `completed` with what it
  collected; any other first step → undone (`refunded`), since what came next is not recorded.
- `charged` (`step` steps of its recorded `steps` done): if a compensation already went through
  (a saga was undoing and died before recording it) → finish undoing → `refunded`. Otherwise
  run the remaining steps (each idempotent by its key) → `completed`; a failure → compensate.
- `inconsistent`: if the failed step was a provisioning that happened after all → `completed`;
  otherwise retry the compensations (idempotent) → `refunded`. While they keep failing it stays
  visible and is retried every `stale_after`.

A transaction still unsettled `stuck_after` seconds after it was created raises a `stuck` alarm.
Whatever settles a transaction's cause for alarm (it reaches a final state, or its debit's
outcome becomes known) is followed by a `resolved` alarm naming the alarms it settles; each pass
also resolves those whose transaction was settled elsewhere (`AlarmHub.resolve_settled`).

Exclusive: a worker never recovers a transaction it is already driving (a recovery or a live
saga), and every `stale_after / 3` seconds it renews the lease of all of those, so no other
worker takes one over while a slow step is under way.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from datetime import timedelta

import attrs
import trio

from gestor.logs import msisdn_var, transaction_id_var
from gestor.model import NewAlarm, Reason, Severity, Transaction, TxKind, TxState
from gestor.platforms import PlatformError
from gestor.purchase import _steps as steps
from gestor.purchase._deps import PurchaseDeps
from gestor.purchase._saga import (
    SagaAbandoned,
    compensate,
    compensations_started,
    count_movement,
    provisioned,
    run_steps,
    step_id,
    undo,
    write,
)
from gestor.rules import STANDARD_OPERATIONS, decode_steps
from gestor.store import DatabaseDown, StoreUnavailable

STANDARD = {o.name: tuple(s.encode() for s in o.steps) for o in STANDARD_OPERATIONS}

logger = logging.getLogger("gestor.recovery")

INTERRUPTED = Reason("INTERRUPTED", "the purchase was interrupted before anything was charged")
REFUNDED_BEFORE = Reason("PROVISIONING_FAILED",
                         "provisioning failed and the debit was refunded before an interruption")


#: The first side effect a movement of each kind may have made, looked up when it stopped before
#: anything was recorded (`received`): by the idempotency keys its steps use (`step_id`).
_FIRST_ACTIONS = {TxKind.PURCHASE: ("advance", "debit"), TxKind.TRANSFER: ("debit",),
                  TxKind.ADVANCE: ("advance",), TxKind.TOPUP: ("recover",)}


def _legacy(tx: Transaction) -> Transaction:
    """A row written before operations were data: its steps are the standard ones of its
    operation, and a charged one had its debit done."""
    if tx.steps or tx.state not in (TxState.CHARGED, TxState.INCONSISTENT):
        return tx
    plan = STANDARD.get(tx.operation or "debit_and_provision", STANDARD["debit_and_provision"])
    return attrs.evolve(tx, steps=plan, step=max(tx.step, 1))


async def resume(deps: PurchaseDeps, tx: Transaction) -> Transaction:
    """Take `tx` from its last durable state as far as the platforms allow."""
    tx = _legacy(tx)
    if tx.state in (TxState.RECEIVED, TxState.PROFILED, TxState.VALIDATED):
        tx = await _undecided(deps, tx)
    if tx.state is TxState.CHARGED:
        started = await compensations_started(deps, tx)
        if started is None:
            raise SagaAbandoned(f"{tx.id}: cannot ask whether its compensation started")
        if started:  # a saga was undoing its steps when it stopped: finish that
            return await compensate(deps, tx, REFUNDED_BEFORE)
        return await run_steps(deps, tx)
    if tx.state is TxState.INCONSISTENT:
        return await _settle_inconsistent(deps, tx)
    return tx


async def _undecided(deps: PurchaseDeps, tx: Transaction) -> Transaction:
    """A movement that stopped before its first durable point: what did its first step do?
    Nothing → `failed`. A purchase's debit (the standard operation) → `charged`, and on. Any
    other first step found → undone (`refunded`): what came next is not recorded, so the
    movement is not guessed forward."""
    p = deps.platforms
    found: dict[str, int] = {}
    for action in _FIRST_ACTIONS[tx.kind]:
        key = step_id(tx.id, action)
        receipt = (await p.lookup_credit(key) if action == "advance"
                   else await p.lookup_debit(key))
        if receipt is not None:
            found[action] = receipt.amount
    if not found:
        return await write(deps, tx, steps.failed(tx, INTERRUPTED, deps.now()))
    if tx.kind is TxKind.TOPUP:  # it collected what it found: done
        move = steps.completed(attrs.evolve(tx, steps=("recover",)), deps.now(),
                               note=f"recovered {found['recover']} owed (found by recovery)")
        move = attrs.evolve(move, collected=found["recover"], operation="recover",
                            steps=("recover",), step=1)
        return await write(deps, tx, move)
    if tx.kind is TxKind.PURCHASE and set(found) == {"debit"}:
        move = steps.charge_found(tx, found["debit"], deps.catalogue.currency, deps.now())
        tx = await write(deps, tx, move)
        await deps.alarms.resolve_transaction(tx)  # the debit's outcome is known now
        return tx
    done = [a for a in ("advance", "debit") if a in found]
    plan = tuple(f"{a}:{'refund' if a == 'debit' else 'reverse'}" for a in done)
    move = steps.progressed(tx, len(done), deps.now(),
                            f"found by recovery: {', '.join(done)}; undoing")
    move = attrs.evolve(move, steps=plan, price=found.get("debit"),
                        amount=found.get("advance", tx.amount))
    tx = await write(deps, tx, move)
    return await compensate(deps, tx, INTERRUPTED)


async def _settle_inconsistent(deps: PurchaseDeps, tx: Transaction) -> Transaction:
    """A compensation failed. If the step that failed was a provisioning that happened after
    all, the movement completes; otherwise its compensations are retried (idempotent)."""
    plan = decode_steps(tx.steps)
    failed = plan[tx.step] if tx.step < len(plan) else None
    # A movement only becomes inconsistent once the saga knew the step failed (an error, or a
    # lookup that found nothing): a lookup that can't answer now doesn't undo that.
    if failed is not None and failed.do == "provision" and await provisioned(deps, tx):
        return await write(deps, tx, steps.completed(tx, deps.now()))
    try:
        for step in reversed(plan[:tx.step]):
            if step.undo is not None:
                await undo(deps, tx, step)
    except PlatformError as exc:
        logger.warning("compensation of inconsistent %s failed again: %s", tx.id, exc)
        return tx
    code = "PROVISIONING_FAILED" if failed is not None and failed.do == "provision" \
        else "STEP_FAILED"
    what = "not provisioned" if code == "PROVISIONING_FAILED" else "not completed"
    reason = Reason(code, f"{what}; refunded by recovery")
    return await write(deps, tx, steps.refunded(tx, reason, deps.now()))


@attrs.frozen
class RecovererStatistics:
    passes: int
    claimed: int
    settled: int
    still_pending: int
    errors: int
    stuck_alarms: int
    alarms_resolved: int


@attrs.define
class Recoverer:
    deps: PurchaseDeps
    interval: float = 10.0
    stale_after: float = 30.0
    stuck_after: float = 600.0
    batch: int = 100
    #: The transactions whose saga runs in this worker (never recovered here; leases renewed).
    live: Callable[[], Iterable[uuid.UUID]] = list
    _active: set[uuid.UUID] = attrs.field(factory=set)
    _passes: int = 0
    _claimed: int = 0
    _settled: int = 0
    _pending: int = 0
    _errors: int = 0
    _stuck: set[object] = attrs.field(factory=set)
    _resolved: int = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """A pass now (what a crash left behind), then one every `interval`, until cancelled;
        meanwhile, renew the leases of what this worker drives."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._heartbeat)
            task_status.started()
            while True:
                try:
                    await self.run_pass()
                except DatabaseDown:
                    pass  # the store's health state has said so, once
                except StoreUnavailable as exc:
                    logger.warning("recovery pass skipped: database unavailable (%s)", exc)
                await trio.sleep(self.interval)

    async def _heartbeat(self) -> None:
        while True:
            await trio.sleep(max(self.stale_after / 3, 0.05))
            ids = self._active.union(self.live())
            if ids:
                try:
                    await self.deps.store.touch(list(ids), self.deps.now())
                except DatabaseDown:
                    pass  # the store's health state has said so, once
                except StoreUnavailable as exc:
                    logger.warning("could not renew recovery leases: %s", exc)

    async def run_pass(self) -> int:
        """Lease and resume every stale transaction (batch after batch); returns how many."""
        self._passes += 1
        total = 0
        while True:
            now = self.deps.now()
            batch = await self.deps.store.claim_stale(
                now - timedelta(seconds=self.stale_after), now, self.batch
            )
            if not batch:
                break
            total += len(batch)
            self._claimed += len(batch)
            mine = self._active.union(self.live())
            async with trio.open_nursery() as nursery:
                for tx in batch:
                    if tx.id not in mine:
                        self._active.add(tx.id)
                        nursery.start_soon(self._recover, tx)
            if len(batch) < self.batch:
                break
        self._resolved += await self.deps.alarms.resolve_settled()
        return total

    async def _recover(self, tx: Transaction) -> None:
        msisdn_var.set(tx.msisdn)  # its own task: every line logged for it names them
        transaction_id_var.set(str(tx.id))
        try:
            await self._resume(tx)
        finally:
            self._active.discard(tx.id)

    async def _resume(self, tx: Transaction) -> None:
        try:
            final = await resume(self.deps, tx)
        except (PlatformError, SagaAbandoned, StoreUnavailable) as exc:
            self._errors += 1
            logger.warning("recovery of %s (%s) deferred: %s", tx.id, tx.state, exc)
            final = tx
        except Exception:
            self._errors += 1
            logger.exception("recovery of %s (%s) failed", tx.id, tx.state)
            final = tx
        if final is not tx:
            count_movement(final, tx.state)
        if final is not tx or final.state.terminal:
            try:
                await self.deps.alarms.resolve_transaction(final)
            except StoreUnavailable as exc:  # the next pass's sweep resolves them
                logger.warning("alarms of %s not resolved yet: %s", tx.id, exc)
        if final.state.terminal:
            self._settled += 1
            self.deps.profiles.forget(tx.msisdn)
            self.deps.profiles.forget(tx.receiver)
            logger.info("recovered %s: %s → %s", tx.id, tx.state, final.state)
            return
        self._pending += 1
        age = (self.deps.now() - tx.created_at).total_seconds()
        if age > self.stuck_after and tx.id not in self._stuck:
            self._stuck.add(tx.id)
            await self.deps.alarms.raise_alarm(
                NewAlarm("stuck", Severity.WARNING,
                         f"{tx.kind} unsettled for {int(age)} s (state {final.state})",
                         msisdn=tx.msisdn, transaction_id=tx.id,
                         details={"state": final.state.value, "age_s": int(age)})
            )

    def statistics(self) -> RecovererStatistics:
        return RecovererStatistics(
            passes=self._passes, claimed=self._claimed, settled=self._settled,
            still_pending=self._pending, errors=self._errors, stuck_alarms=len(self._stuck),
            alarms_resolved=self._resolved,
        )
