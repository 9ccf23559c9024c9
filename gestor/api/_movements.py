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
import re
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from quart import Response, request

from gestor.api import _render as render
from gestor.api import _validate as validate
from gestor.api._auth import allow_channel, allow_msisdn, principal
from gestor.api._limits import enforce as enforce_limits
from gestor.api._problems import ApiProblem, json_response
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

#: Largest amount a movement may name (minor units): PostgreSQL's bigint, halved so that an
#: amount plus its fee still fits.
MAX_AMOUNT = 2**62
_REFERENCE = re.compile(r"[\x21-\x7e]{1,100}")
_FIELDS = {
    TxKind.TRANSFER: (frozenset({"msisdn", "beneficiary", "amount"}), frozenset({"channel"})),
    TxKind.ADVANCE: (frozenset({"msisdn", "amount"}), frozenset({"channel"})),
    TxKind.TOPUP: (frozenset({"msisdn", "amount", "reference"}), frozenset({"channel"})),
}
_WHAT = {TxKind.PURCHASE: "purchase", TxKind.TRANSFER: "transfer",
         TxKind.ADVANCE: "advance", TxKind.TOPUP: "top-up"}


def request_hash(*parts: object) -> str:
    """What makes two requests with one Idempotency-Key the same request."""
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()


def amount(value: Any, field: str = "amount") -> int:
    """A positive whole amount in minor units."""
    if type(value) is not int or not 0 < value <= MAX_AMOUNT:
        raise ApiProblem(422, "INVALID_AMOUNT",
                         f"{field} must be a whole number of cents above 0", field=field)
    return value


def reference(value: Any, field: str = "reference") -> str:
    if not isinstance(value, str) or not _REFERENCE.fullmatch(value):
        raise ApiProblem(422, "INVALID_REFERENCE", f"{field} must be 1 to 100 printable ASCII "
                         "characters", field=field)
    return value


def beneficiary(value: Any, payer: str, field: str = "beneficiary") -> str:
    """Another mobile than the payer's."""
    found = validate.msisdn(value, field)
    if found == payer:
        raise ApiProblem(422, "INVALID_BENEFICIARY",
                         f"{field} must be another mobile than msisdn", field=field)
    return found


def _body(kind: TxKind, body: dict[str, Any]) -> dict[str, Any]:
    required, optional = _FIELDS[kind]
    unknown = sorted(set(body) - required - optional)
    if unknown:
        raise ApiProblem(422, "UNKNOWN_FIELD", f"unknown field {unknown[0]!r}", field=unknown[0])
    for name in sorted(required):
        if name not in body:
            raise ApiProblem(422, "MISSING_FIELD", f"{name} is required", field=name)
    return body


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
        body = _body(kind, body)
        payer = validate.msisdn(body["msisdn"])
        channel = validate.channel(body.get("channel"))
        how_much = amount(body["amount"])
        other = beneficiary(body["beneficiary"], payer) if "beneficiary" in body else None
        ref = reference(body["reference"]) if "reference" in body else None
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
            at=datetime.now(UTC), kind=kind, beneficiary=other, amount=how_much, reference=ref,
        )
        transaction_id_var.set(str(new.id))  # this request's log lines name the movement
        msisdn_var.set(payer)
        outcome = await app.runtime.purchases.purchase(new)
        return await answer(app, outcome, key, wait, new)

    @app.post("/v1/transfers")
    async def transfer() -> Response:
        return await movement(TxKind.TRANSFER, "transfer")

    @app.post("/v1/advances")
    async def advance() -> Response:
        return await movement(TxKind.ADVANCE, "advance")

    @app.post("/v1/topups")
    async def topup() -> Response:
        return await movement(TxKind.TOPUP, "topup")
