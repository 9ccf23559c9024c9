"""JSON shapes of the API's resources."""

from __future__ import annotations

from typing import Any

import msgspec

from gestor.catalogue import Catalogue
from gestor.model import Alarm, Transaction, TxKind
from gestor.purchase import OfferList, Portrait


def transaction(tx: Transaction, catalogue: Catalogue, viewer: str | None = None
                ) -> dict[str, Any]:
    """A movement; listed for mobile `viewer`, with that mobile's `role` in it."""
    bono = catalogue.get(tx.bono_id) if tx.bono_id else None
    out: dict[str, Any] = {
        "id": str(tx.id),
        "kind": tx.kind.value,
        "msisdn": tx.msisdn,
        "beneficiary": tx.beneficiary,
        "bono": {"id": tx.bono_id, "name": bono.name if bono else None,
                 "kind": bono.kind if bono else None} if tx.bono_id else None,
        "amount": tx.amount,
        "fee": tx.fee,
        "channel": tx.channel,
        "state": tx.state.value,
        "final": tx.state.terminal,
        "price": tx.price,
        "currency": tx.currency,
        "operation": tx.operation,
        "profile_id": tx.profile_id,
        "rules_version": tx.rules_version,
        "catalogue_version": tx.catalogue_version,
        "step": tx.step,
        "reasons": [r.as_dict() for r in tx.reasons],
        "created_at": tx.created_at.isoformat(),
        "updated_at": tx.updated_at.isoformat(),
        "history": [h.as_dict() for h in tx.history],
        "links": {
            "self": f"/v1/transactions/{tx.id}",
            "mobile": f"/v1/mobiles/{tx.msisdn}/transactions",
        },
    }
    if tx.kind is TxKind.TOPUP:
        out["reference"] = tx.reference
        out["collected"] = tx.collected
    if tx.owed is not None:
        out["owed"] = tx.owed
    if viewer is not None:
        out["role"] = tx.role_of(viewer).value
    return out


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


def portrait(p: Portrait, catalogue: Catalogue) -> dict[str, Any]:
    """A subscriber through the profiler (`GET /v1/admin/mobiles/{msisdn}`)."""
    profile = p.profile
    last = p.counters.get("last_purchase_at")
    return {
        "msisdn": p.msisdn,
        "at": p.at.isoformat(),
        "profile": {
            "profile_id": profile.profile_id,
            "category": profile.category,
            "rule_id": profile.rule_id,
            "attributes": dict(profile.attributes),
            "rules_version": profile.rules_version,
            "channel": profile.channel,
            "sources": {name: None if data is None else dict(data)
                        for name, data in profile.sources.items()},
            "customer": None if profile.customer is None else dict(profile.customer),
            "notes": list(profile.notes),
        },
        "counters": {**p.counters, "last_purchase_at": last.isoformat() if last else None},
        "restrictions": [{"code": r.code, "reason": r.reason,
                          "until": r.until.isoformat() if r.until else None}
                         for r in p.restrictions],
        "advance_outstanding": p.advance_outstanding,
        "ledger_balance": p.ledger_balance,
        "pending": None if p.pending is None else transaction(p.pending, catalogue, p.msisdn),
        "recent": [transaction(tx, catalogue, p.msisdn) for tx in p.recent],
        "peak_hours": {
            "timezone": p.peak_hours.timezone,
            "from": p.peak_hours.since.isoformat(),
            "to": p.peak_hours.until.isoformat(),
            "cells": [{"weekday": d, "hour": h, "count": n} for d, h, n in p.peak_hours.cells()],
        },
    }


_encode = msgspec.json.Encoder().encode


def alarm(event: Alarm) -> str:
    """One alarm as a websocket text message."""
    return _encode(event.as_dict()).decode()

