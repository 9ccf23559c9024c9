"""JSON shapes of the API's resources."""

from __future__ import annotations

from typing import Any

import msgspec

from gestor.catalogue import Catalogue
from gestor.model import Alarm, Transaction
from gestor.purchase import OfferList


def transaction(tx: Transaction, catalogue: Catalogue) -> dict[str, Any]:
    bono = catalogue.get(tx.bono_id)
    return {
        "id": str(tx.id),
        "msisdn": tx.msisdn,
        "bono": {"id": tx.bono_id, "name": bono.name if bono else None,
                 "kind": bono.kind if bono else None},
        "channel": tx.channel,
        "state": tx.state.value,
        "final": tx.state.terminal,
        "price": tx.price,
        "currency": tx.currency,
        "operation": tx.operation,
        "profile_id": tx.profile_id,
        "rules_version": tx.rules_version,
        "catalogue_version": tx.catalogue_version,
        "reasons": [r.as_dict() for r in tx.reasons],
        "created_at": tx.created_at.isoformat(),
        "updated_at": tx.updated_at.isoformat(),
        "history": [h.as_dict() for h in tx.history],
        "links": {
            "self": f"/v1/transactions/{tx.id}",
            "mobile": f"/v1/mobiles/{tx.msisdn}/transactions",
        },
    }


def offers(result: OfferList) -> dict[str, Any]:
    items = []
    for offer in result.offers:
        bono = offer.bono
        items.append({
            "id": bono.id,
            "name": bono.name,
            "kind": bono.kind,
            "price": offer.price,
            "list_price": bono.price,
            "currency": bono.currency,
            "validity_days": bono.validity_days,
            "data_mb": bono.data_mb,
            "voice_min": bono.voice_min,
            "sms": bono.sms,
            "operation": offer.operation.operation,
            "eligible": offer.eligible,
            "reasons": [{"code": f.code, "message": f.message, "rule": f.rule_id}
                        for f in offer.failures],
        })
    return {
        "msisdn": result.msisdn,
        "profile_id": result.profile_id,
        "rules_version": result.rules_version,
        "catalogue_version": result.catalogue_version,
        "currency": result.currency,
        "bonos": items,
    }


_encode = msgspec.json.Encoder().encode


def alarm(event: Alarm) -> str:
    """One alarm as a websocket text message."""
    return _encode(event.as_dict()).decode()

