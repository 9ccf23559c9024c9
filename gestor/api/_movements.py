"""The movements besides buying a bono for oneself (DESIGN D10): `POST /v1/transfers` (airtime for
another mobile), `POST /v1/advances` (a balance advance), `POST /v1/topups` (the recharge
platform's notice of a top-up, which collects what advances owe), and what every movement's POST
answers (`answer`, shared with `POST /v1/purchases`).

Each is a transaction like a purchase: `Idempotency-Key` required, accepted by the payer's
subscriber actor under the guard of every mobile it touches (`409 MOVEMENT_PENDING` naming the
movement in flight), run by the saga, `Prefer: wait=N` for its final state.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from typing import TYPE_CHECKING, Any

import attrs
from quart import Response, request

from gestor.api import _registry as reg
from gestor.api import _render as render
from gestor.api import _resources as res
from gestor.api import _validate as validate
from gestor.api._auth import allow_channel, allow_msisdn, principal
from gestor.api._decode import body_as
from gestor.api._limits import enforce as enforce_limits
from gestor.api._problems import ApiProblem, json_response
from gestor.api._registry import Answer, Param, documented
from gestor.api._requests import AdvanceRequest, TopupRequest, TransferRequest
from gestor.logs import msisdn_var, transaction_id_var
from gestor.model import NewTransaction, TxKind
from gestor.store import (
    Accepted,
    AcceptOutcome,
    Expired,
    KeyReused,
    PendingExists,
    Replayed,
    Unsettled,
)

if TYPE_CHECKING:
    from gestor.api._gestor_app import GestorApp
    from gestor.settings import Settings

logger = logging.getLogger("gestor.api")

_MODELS: dict[TxKind, type[TransferRequest | AdvanceRequest | TopupRequest]] = {
    TxKind.TRANSFER: TransferRequest, TxKind.ADVANCE: AdvanceRequest, TxKind.TOPUP: TopupRequest,
}
_WHAT = {TxKind.PURCHASE: "purchase", TxKind.TRANSFER: "transfer",
         TxKind.ADVANCE: "advance", TxKind.TOPUP: "top-up"}


def request_hash(*parts: object) -> str:
    """What makes two requests with one Idempotency-Key the same request."""
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()


async def answer(app: GestorApp, outcome: AcceptOutcome | Unsettled, key: str, wait: float,
                 new: NewTransaction) -> Response:
    """A movement POST's answer (README, "Buy a bono"): a 503 SERVICE_UNAVAILABLE means nothing
    was written and nothing will be; OUTCOME_UNKNOWN that it may have been."""
    what = _WHAT[new.kind]
    if isinstance(outcome, Expired):
        logger.debug("%s refused, nothing written: %s", what, outcome.reason)
        raise ApiProblem(
            503, "SERVICE_UNAVAILABLE",
            f"nothing was done by this request: {outcome.reason}; safe to retry, with "
            "this Idempotency-Key or, unless an earlier request with it was answered "
            "OUTCOME_UNKNOWN, a new one", headers={"Retry-After": "1"},
        )
    if isinstance(outcome, Unsettled):
        raise ApiProblem(
            503, "OUTCOME_UNKNOWN",
            f"the {what} may or may not have been accepted ({outcome.reason}); ask again "
            "with the same Idempotency-Key: that returns it if it was accepted, or starts "
            "it if it was not", field="Idempotency-Key", idempotency_key=key,
            headers={"Retry-After": "1"},
        )
    if isinstance(outcome, PendingExists):
        pending = outcome.transaction
        busy = next(m for m in new.mobiles if m in (pending.msisdn, pending.receiver))
        field = "msisdn" if busy == new.msisdn else "beneficiary"
        purchase = new.kind is TxKind.PURCHASE and pending.kind is TxKind.PURCHASE \
            and busy == new.msisdn
        raise ApiProblem(
            409, "PURCHASE_PENDING" if purchase else "MOVEMENT_PENDING",
            f"mobile {busy} already has a {_WHAT[pending.kind]} in flight: {pending.id}",
            field=field, pending_transaction=str(pending.id),
            links={"pending": f"/v1/transactions/{pending.id}"},
        )
    if isinstance(outcome, KeyReused):
        raise ApiProblem(
            422, "IDEMPOTENCY_KEY_REUSED",
            f"this Idempotency-Key was already used for a different {what}"
            if new.kind is not TxKind.TOPUP or outcome.transaction.reference != new.reference
            else "this top-up reference was already notified with another msisdn or amount",
            field="reference" if outcome.transaction.reference == new.reference
            and new.reference is not None else "Idempotency-Key",
            transaction=str(outcome.transaction.id),
        )
    assert isinstance(outcome, Accepted | Replayed)
    tx = outcome.transaction
    transaction_id_var.set(str(tx.id))  # a replay's is the first request's
    if wait > 0:
        tx = await app.runtime.purchases.wait_final(tx, wait)
    headers = {"Location": f"/v1/transactions/{tx.id}"}
    if isinstance(outcome, Replayed):
        headers["Idempotent-Replayed"] = "true"
    status = 200 if tx.state.terminal else 202
    return json_response(render.transaction(tx, app.runtime.catalogue), status, headers)


def register(app: GestorApp, settings: Settings) -> None:
    async def movement(kind: TxKind, call: str) -> Response:
        key = validate.idempotency_key(request.headers.get("Idempotency-Key"))
        wait = validate.prefer_wait(request.headers.get("Prefer"), settings.max_wait)
        body = validate.json_object(await request.get_data(cache=False, as_text=False))
        only = principal().default_channel()  # a key limited to one channel moves on it
        if only is not None and "channel" not in body:
            body["channel"] = only
        wanted = body_as(_MODELS[kind], body)
        payer = validate.msisdn(wanted.msisdn)
        channel = validate.channel(wanted.channel)
        how_much = wanted.amount
        other = (validate.beneficiary(wanted.beneficiary, payer)
                 if isinstance(wanted, TransferRequest) else None)
        ref = wanted.reference if isinstance(wanted, TopupRequest) else None
        allow_channel(channel)
        allow_msisdn(payer)
        if other is not None:
            allow_msisdn(other)
        enforce_limits(app, settings, call, payer)
        # A top-up is the same notice whoever relays it: its hash leaves the channel out.
        digest = (request_hash(kind.value, payer, how_much, ref) if kind is TxKind.TOPUP
                  else request_hash(kind.value, payer, other, how_much, channel))
        new = NewTransaction(
            id=uuid.uuid4(), msisdn=payer, bono_id="", channel=channel,
            client=principal().name, idempotency_key=key, request_hash=digest,
            at=app.runtime.purchases.deps.now(), kind=kind, beneficiary=other,
            amount=how_much, reference=ref,
        )
        transaction_id_var.set(str(new.id))  # this request's log lines name the movement
        msisdn_var.set(payer)
        outcome = await app.runtime.purchases.purchase(new)
        return await answer(app, outcome, key, wait, new)

    @app.post("/v1/transfers")
    @documented("Transfer airtime to another mobile", "Movements", _answers(
        "transfer", res.TRANSFER_EXAMPLE), body=TransferRequest,
        params=_params("transfer-7f1d0c52"), problems=(*_PROBLEMS, "INVALID_BENEFICIARY"),
        body_example={"msisdn": "5491100000001", "beneficiary": "5491100000002",
                      "amount": 20000, "channel": "ussd"})
    async def transfer() -> Response:
        """`msisdn` pays `amount` and the rules' fee (`fee`), `beneficiary` is credited
        `amount`; a rule may refuse it (`rejected`, with `reasons`: `INSUFFICIENT_BALANCE`,
        `BENEFICIARY_NOT_ACTIVE`, `GIFT_LIMIT_REACHED`...)."""
        return await movement(TxKind.TRANSFER, "transfer")

    @app.post("/v1/advances")
    @documented("Advance balance to a mobile", "Movements", _answers("advance"),
                body=AdvanceRequest, params=_params("advance-7f1d0c52"), problems=_PROBLEMS,
                body_example={"msisdn": "5491100000132", "amount": 50000, "channel": "ussd"})
    async def advance() -> Response:
        """`msisdn` is credited `amount` and owes it with the rules' fee (`owed`) until its
        next top-ups collect it; a rule may refuse it (`rejected`: `BALANCE_NOT_LOW`,
        `ADVANCE_OUTSTANDING`...)."""
        return await movement(TxKind.ADVANCE, "advance")

    @app.post("/v1/topups")
    @documented("Notify a top-up (collects what advances owe)", "Movements",
                _answers("top-up"), body=TopupRequest, params=_params("topup-7f1d0c52"),
                problems=_PROBLEMS,
                body_example={"msisdn": "5491100000003", "amount": 30000,
                              "reference": "RCH-20260131-0001", "channel": "api"})
    async def topup() -> Response:
        """The recharge platform's notice that `msisdn` was topped up by `amount`: it collects
        what the mobile's advances owe, up to the top-up (`collected`). One top-up per
        `reference`: the same notice again (any Idempotency-Key, any channel) answers the
        same transaction; the reference with another msisdn or amount is
        `IDEMPOTENCY_KEY_REUSED` naming `reference`."""
        return await movement(TxKind.TOPUP, "topup")


#: What each movement POST can answer besides its body's fields (`x-problem`).
_PROBLEMS = ("IDEMPOTENCY_KEY_REQUIRED", "INVALID_IDEMPOTENCY_KEY", "INVALID_PREFER",
             "MOVEMENT_PENDING", "IDEMPOTENCY_KEY_REUSED", "RATE_LIMITED", "TOO_MANY_REQUESTS",
             "BUSY", "OUTCOME_UNKNOWN", "PLATFORM_UNAVAILABLE")


def _answers(what: str, example: dict[str, Any] | None = None) -> tuple[Answer, ...]:
    return (Answer(200, res.Transaction, f"the {what} reached its final state (`Prefer: wait`)",
                   ("Location", "Idempotent-Replayed"), example),
            Answer(202, res.Transaction, f"the {what} is accepted and still running, or "
                   "`inconsistent` (being settled); follow `Location`",
                   ("Location", "Idempotent-Replayed")))


def _params(key_example: str) -> tuple[Param, ...]:
    """Its headers; an Idempotency-Key example of its own, so that each call's example is a
    request of its own (one key, one request)."""
    return (attrs.evolve(reg.IDEMPOTENCY_KEY, example=key_example), reg.PREFER_WAIT,
            reg.CLIENT_ID)
