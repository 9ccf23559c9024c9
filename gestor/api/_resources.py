"""The response bodies of the API, as msgspec Structs: the OpenAPI document publishes their
JSON Schema, and the contract test (tests/integration/test_contract.py) holds every answer
the server gives to it. `_render` and the records' `as_dict` build the bodies themselves.

Times are ISO 8601 strings; amounts integer minor units.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

Time = Annotated[str, Meta(description="an ISO 8601 time", examples=["2026-01-31T12:00:00+00:00"])]
Id = Annotated[str, Meta(description="a UUID",
                         examples=["6f1c8f7e-3b9a-4c57-9f0e-2b8b8a1d2e3f"])]
Amount = Annotated[int, Meta(description="integer minor units (cents)", examples=[60000])]


class _Out(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An answer's body: a member it does not declare is a drift the contract test fails."""


class Problem(msgspec.Struct, kw_only=True):
    """An error (RFC 9457): `code` is stable, `field` names the part of the request at fault;
    some codes add members (`pending_transaction`, `scope`, `role`, `limit`...)."""

    type: Annotated[str, Meta(examples=["https://gestor.dev/problems/invalid-msisdn"])]
    title: Annotated[str, Meta(examples=["Unprocessable request"])]
    status: Annotated[int, Meta(ge=400, le=599, examples=[422])]
    code: Annotated[str, Meta(pattern="^[A-Z0-9_]+$", examples=["INVALID_MSISDN"])]
    detail: str
    field: str | msgspec.UnsetType = msgspec.UNSET


class Health(_Out):
    status: Literal["ok"]


class Readiness(_Out):
    status: Literal["ready", "not ready"]
    checks: dict[str, Any]


class BonoRef(_Out):
    id: str
    name: str | None
    kind: str | None


class Reason(_Out):
    """Why a transaction was rejected or failed."""

    code: str
    message: str
    rule: str | msgspec.UnsetType = msgspec.UNSET


class HistoryEntry(_Out):
    state: str
    at: Time
    note: str | msgspec.UnsetType = msgspec.UNSET


class TransactionLinks(_Out):
    self: str
    mobile: str


State = Literal["received", "profiled", "validated", "charged", "completed", "rejected",
                "failed", "refunded", "inconsistent"]


Kind = Literal["purchase", "transfer", "advance", "topup"]


class Transaction(_Out):
    """A movement (`kind`: a purchase of a bono, an airtime transfer, a balance advance or a
    top-up) and where it stands (`final`: nothing more will happen to it)."""

    id: Id
    msisdn: Annotated[str, Meta(description="the payer (a top-up's: the mobile topped up)")]
    bono: Annotated[BonoRef | None, Meta(description="the bono bought; null for a movement "
                                                     "that is not a purchase")]
    channel: str
    state: State
    final: bool
    price: Amount | None
    currency: str | None
    operation: str | None
    profile_id: str | None
    rules_version: int | None
    reasons: list[Reason]
    created_at: Time
    updated_at: Time
    history: list[HistoryEntry]
    links: TransactionLinks
    # -- movements (DESIGN D10) --
    kind: Kind
    beneficiary: Annotated[str | None, Meta(
        description="the mobile that receives the bono or the airtime; null: msisdn itself")]
    amount: Annotated[int | None, Meta(
        description="a transfer's, advance's or top-up's amount in cents; null for a purchase",
        examples=[20000])]
    fee: Annotated[int | None, Meta(
        description="the rules' fee on a transfer or an advance, in cents (a transfer's payer "
                    "pays `amount` + `fee`, its `price`; an advance owes them); null until "
                    "decided",
        examples=[1000])]
    catalogue_version: Annotated[int | None, Meta(
        description="the catalogue version the movement was decided on (null before)")]
    step: Annotated[int, Meta(ge=0, description="how many steps of its operation are done")]
    reference: Annotated[str | None, Meta(
        description="top-ups only: the top-up's reference on the recharge platform",
        examples=["RCH-20260131-0001"])] | msgspec.UnsetType = msgspec.UNSET
    collected: Annotated[int | None, Meta(
        description="top-ups only: what it collected of the debts of the mobile's advances, "
                    "in cents (null until decided)")] | msgspec.UnsetType = msgspec.UNSET
    owed: Annotated[int, Meta(
        description="advances only: what it still owes (amount + fee), in cents, until "
                    "top-ups collect it")] | msgspec.UnsetType = msgspec.UNSET
    role: Annotated[Literal["payer", "beneficiary"], Meta(
        description="in a mobile's listing only: that mobile's part in the movement"
    )] | msgspec.UnsetType = msgspec.UNSET


class Transactions(_Out):
    """A mobile's transactions, newest first (`client`: only those of the calling key)."""

    msisdn: str
    transactions: list[Transaction]
    client: str | msgspec.UnsetType = msgspec.UNSET


class OfferReason(_Out):
    code: str
    message: str
    rule: str | None


class Offer(_Out):
    id: str
    name: str
    kind: str
    price: Amount
    list_price: Amount
    currency: str
    validity_days: int | None
    data_mb: int | None
    voice_min: int | None
    sms: int | None
    operation: str
    eligible: bool
    reasons: list[OfferReason]


class Offers(_Out):
    """The bonos a mobile may buy on a channel, and why not the ineligible ones."""

    msisdn: str
    profile_id: str
    rules_version: int
    catalogue_version: int
    currency: str
    bonos: list[Offer]


class Acknowledgement(_Out):
    by: str | None
    at: Time
    note: str


class Alarm(_Out):
    """A persisted alarm and its lifecycle."""

    id: int | None
    at: Time
    kind: str
    severity: str
    message: str
    msisdn: str | None
    transaction_id: str | None
    details: dict[str, Any] | None
    state: Literal["open", "resolved"] | None
    resolved_by: int | None
    resolved_at: Time | None
    acknowledged: Acknowledgement | None


class Alarms(_Out):
    alarms: list[Alarm]
    next: str | None


class Notification(_Out):
    """One delivery of the notifications outbox: a message for one recipient by one channel."""

    id: int
    alarm_id: int | None
    transaction_id: str | None
    channel: Literal["email", "sms", "webhook"]
    recipient: Annotated[str, Meta(description="an e-mail address or a phone number")]
    language: str | None
    subject: Annotated[str | None, Meta(description="an e-mail's subject, an SMS's text; "
                                        "null until first attempted")]
    state: Literal["pending", "sent", "failed"]
    attempts: int
    last_error: str | None
    created_at: Time
    sent_at: Time | None


class Notifications(_Out):
    notifications: list[Notification]
    next: str | None


class AuditEntry(_Out):
    id: int
    at: Time
    actor_id: str
    actor: str
    action: str
    subject: str
    before: Any
    after: Any


class AuditTrail(_Out):
    entries: list[AuditEntry]
    next: str | None


class Restriction(_Out):
    code: str
    reason: str | None
    until: Time | None
    created_at: Time


class MobileRestriction(Restriction):
    msisdn: str


class Restrictions(_Out):
    msisdn: str
    restrictions: list[Restriction]


class ProfileSources(_Out):
    """Each platform's record of the line as it answered now; null when it could not be asked
    or does not know the line (`notes` say which)."""

    dwh: Annotated[dict[str, Any] | None, Meta(
        description="the data warehouse's profile (segment, tenure_months, region, device, "
                    "plan, birthday_month, language)")]
    ocs: Annotated[dict[str, Any] | None, Meta(
        description="the charging system's account (balance, currency, line_status, roaming, "
                    "credit_limit)")]


class SubscriberProfile(_Out):
    """The profile the active rules assign the line now, from the platforms' answers."""

    profile_id: Annotated[str | None, Meta(
        description="what the profiling rules assign; null when a source they need did not "
                    "answer", examples=["PREPAID"])]
    category: Annotated[str | None, Meta(
        description="the data warehouse's segment of the line (prepaid, postpaid, vip, "
                    "corporate); null without the data warehouse", examples=["prepaid"])]
    rule_id: Annotated[str | None, Meta(description="the profiling rule that matched (null: "
                                                    "none did, the profile is DEFAULT)")]
    attributes: Annotated[dict[str, Any], Meta(description="the matched rule's attributes")]
    rules_version: int
    channel: Annotated[str, Meta(description="the channel the profile was evaluated for")]
    sources: ProfileSources
    customer: Annotated[dict[str, Any] | None, Meta(
        description="the customer fields the rules see (both sources merged); null unless "
                    "both answered")]
    notes: Annotated[list[str], Meta(description="what could not be asked or evaluated, "
                                                 "and why")]


class SubscriberCounters(_Out):
    """The history the rules read, as of now (today and this month in `[purchase] timezone`)."""

    purchases_today: int
    purchases_month: int
    spent_today: Amount
    spent_month: Amount
    gifts_today: int
    gifted_today: Amount
    last_purchase_at: Time | None


class RestrictionInForce(_Out):
    code: str
    reason: str | None
    until: Time | None


class PeakCell(_Out):
    weekday: Annotated[int, Meta(ge=0, le=6, description="0 = Monday ... 6 = Sunday")]
    hour: Annotated[int, Meta(ge=0, le=23)]
    count: Annotated[int, Meta(ge=0)]


class SubscriberPeakHours(_Out):
    """The movements the mobile made (as payer, any outcome) per weekday and hour in
    `timezone`, over the last 90 days: all 168 cells, zeros included."""

    timezone: str
    from_: Annotated[Time, Meta(description="start of the period (inclusive)")] = msgspec.field(
        name="from")
    to: Annotated[Time, Meta(description="end of the period (exclusive): now")]
    cells: list[PeakCell]


class SubscriberView(_Out):
    """A subscriber through the profiler: profile, counters, restrictions, what its advances
    owe, its movement in flight, its 20 most recent movements (either role) and peak hours."""

    msisdn: str
    at: Annotated[Time, Meta(description="when it was read (the server's clock)")]
    profile: SubscriberProfile
    counters: SubscriberCounters
    restrictions: Annotated[list[RestrictionInForce], Meta(description="those in force now")]
    advance_outstanding: Annotated[Amount, Meta(
        description="what the mobile's advances still owe (amount + fee, less what top-ups "
                    "collected)")]
    ledger_balance: Annotated[int, Meta(
        description="what Gestor moved on the line's balance, by the ledger: credits - debits "
                    "of the account `subscriber:<msisdn>` over all time (negative: it took more "
                    "than it gave)")]
    pending: Annotated[Transaction | None, Meta(
        description="the movement in flight on this mobile (either role), if any")]
    recent: Annotated[list[Transaction], Meta(description="newest first, each with its `role`")]
    peak_hours: SubscriberPeakHours


VersionStatus = Literal["draft", "active", "retired"]


class VersionSummary(_Out):
    """A stored version (of the rules or the catalogue): who made and activated it, when."""

    version: int
    status: VersionStatus
    description: str
    based_on: int | None
    created_by: str
    created_at: Time
    activated_by: str | None
    activated_at: Time | None


class RuleSetSummary(VersionSummary):
    """A rule-set version."""


class RuleSets(_Out):
    active_version: int
    versions: list[RuleSetSummary]


class VersionAudit(_Out):
    """One change to a version: `seed` (version 1, from the config files), `create` or
    `activate`, by whom, when."""

    action: Literal["seed", "create", "activate"]
    actor: str
    at: Time


class RuleSet(RuleSetSummary):
    source: str
    audit: list[VersionAudit]


class RuleIssue(_Out):
    section: str
    rule_id: str | None
    field: str | None
    message: str
    severity: Literal["error", "warning"]


class RulesCheck(_Out):
    valid: bool
    warnings: list[RuleIssue]


class RuleSetCreated(RuleSetSummary):
    warnings: list[RuleIssue]


class DryRun(_Out):
    """Each subject's offers (and the decision on `bono_id`) under the draft and the active
    rule set, and whether they differ."""

    version: int
    active_version: int
    results: list[dict[str, Any]]


class CatalogueSummary(VersionSummary):
    """A catalogue version."""


class CatalogueVersions(_Out):
    active_version: int
    versions: list[CatalogueSummary]


class CatalogueBono(_Out):
    """A bono of a catalogue; its price in minor units of the catalogue's currency."""

    id: Annotated[str, Meta(examples=["DATA_2GB_7D"])]
    name: Annotated[str, Meta(examples=["2 GB for 7 days"])]
    kind: Literal["data", "voice", "sms", "combo"]
    price: Amount
    currency: Annotated[str, Meta(pattern="^[A-Z]{3}$", examples=["ARS"])]
    validity_days: Annotated[int, Meta(ge=1, examples=[7])]
    data_mb: Annotated[int, Meta(ge=0, examples=[2048])]
    voice_min: Annotated[int, Meta(ge=0, examples=[0])]
    sms: Annotated[int, Meta(ge=0, examples=[0])]
    roaming: bool


class CatalogueDocument(_Out):
    """A catalogue as parsed: its currency and its bonos in order."""

    currency: Annotated[str, Meta(pattern="^[A-Z]{3}$", examples=["ARS"])]
    bonos: list[CatalogueBono]


class CatalogueVersion(CatalogueSummary):
    """A catalogue version: its source as submitted (TOML, or JSON text), the catalogue it
    parses to, and its audit."""

    source: str
    catalogue: CatalogueDocument
    audit: list[VersionAudit]


class Repricing(_Out):
    id: str
    from_: Amount = msgspec.field(name="from")
    to: Amount


class CatalogueChanges(_Out):
    """What a catalogue changes in the active one: bonos added, retired (in the active one,
    not in this), repriced, and changed in any field (price included)."""

    added: list[str]
    retired: list[str]
    repriced: list[Repricing]
    changed: list[str]


class CatalogueIssue(RuleIssue):
    """A warning on a catalogue: a rule's (`rule_id`) or a retired bono's (`section` bono);
    `entry` names the rule or the bono, `field` the field at fault."""

    entry: str | None


class CatalogueCheck(_Out):
    """A valid catalogue, checked against the active rules (`rules_version`): its size, what
    it changes in the active catalogue (`active_version`) and the warnings."""

    valid: bool
    rules_version: int
    active_version: int
    bonos: int
    currency: str
    changes: CatalogueChanges
    warnings: list[CatalogueIssue]


class CatalogueCreated(CatalogueSummary):
    """A new draft, with what it would change and its warnings."""

    changes: CatalogueChanges
    warnings: list[CatalogueIssue]


class KeyRecord(_Out):
    """An API key's public record; never its secret."""

    id: Annotated[str, Meta(pattern="^[0-9a-f]{12}$", examples=["0123456789ab"])]
    name: str
    kind: Literal["operator", "channel"]
    created_at: Time
    created_by: str
    expires_at: Time | None
    revoked_at: Time | None
    revoked_by: str | None
    rotated_from: str | None
    role: str | msgspec.UnsetType = msgspec.UNSET
    channels: list[str] | msgspec.UnsetType = msgspec.UNSET
    calls: list[str] | msgspec.UnsetType = msgspec.UNSET
    msisdn_prefixes: list[str] | msgspec.UnsetType = msgspec.UNSET
    read: Literal["own", "all"] | msgspec.UnsetType = msgspec.UNSET
    status: Literal["active", "revoked", "expired"] | msgspec.UnsetType = msgspec.UNSET


class Keys(_Out):
    keys: list[KeyRecord]


class NewKey(KeyRecord, kw_only=True):
    """A new key's record and, this once, the raw key (`Cache-Control: no-store`)."""

    key: Annotated[str, Meta(description="the raw key: shown once, keep it secret",
                             examples=["gk_0123456789ab_" + "x" * 43])]


class RotatedKey(NewKey, kw_only=True):
    replaces: KeyRecord


class Statistics(_Out):
    """Counters of the worker that answered (actors, purchases, store, platforms...)."""

    actors: dict[str, Any]
    purchases: dict[str, Any]
    store: dict[str, Any]
    platforms: dict[str, Any]
    alarms: dict[str, Any]
    recovery: dict[str, Any]
    webhooks: dict[str, Any]
    notifications: dict[str, Any] | None
    rules: dict[str, Any]
    keys: dict[str, Any]
    connections: dict[str, Any] | None
    rate_limits: dict[str, Any]


class RateFigures(_Out):
    """A worker's (or the whole server's) figures since it started: purchases by outcome,
    accepted, in flight now, the purchase requests' latency per bucket (`latency_bounds`, the
    last bucket above them all), and per platform its circuit state, calls in flight, calls
    and their latency per bucket (`platform_latency_bounds`)."""

    purchases: dict[str, float]
    accepted: float
    in_flight: float
    latency: list[float]
    platforms: dict[str, Any]


class WorkerRates(RateFigures):
    worker: Annotated[str, Meta(examples=["0"])]
    pid: int


class Rates(_Out):
    """What the console's live rates are drawn from: cumulative figures of each live worker and
    of the whole server (stopped workers' counts included); diff two readings for rates."""

    at: Time
    latency_bounds: list[float]
    platform_latency_bounds: list[float]
    outcomes: list[str]
    workers: list[WorkerRates]
    total: RateFigures


class Operator(_Out):
    """The operator key a request was made with: its public id, name and role."""

    key_id: Annotated[str, Meta(examples=["3f2a9c0d1e7b"])]
    name: Annotated[str, Meta(examples=["ada"])]
    role: Literal["viewer", "operator", "admin"]


class Mismatch(_Out):
    """A transaction on which Gestor and the ledger disagree."""

    kind: str
    transaction_id: str
    msisdn: str
    state: str | None
    price: Amount | None
    debited: Amount
    refunded: Amount
    created_at: Time | None
    detail: str


class UnsettledTransaction(_Out):
    transaction_id: str
    msisdn: str
    state: str
    price: Amount | None
    debited: Amount
    refunded: Amount
    created_at: Time
    updated_at: Time


class ReconciliationTotals(_Out):
    transactions: int
    debits: int
    refunds: int
    debited: Amount
    refunded: Amount
    net: Amount
    completed: Amount
    unsettled: Amount
    difference: Amount
    balanced: bool
    # -- movements: what credits gave (a transfer's beneficiary, an advance) --
    credits: Annotated[int, Meta(description="how many credits the ledger holds")]
    credited: Annotated[int, Meta(description="what they gave, in cents (`net` is debited "
                                              "less refunded less credited)")]


class LedgerMismatch(_Out):
    """A settled movement whose ledger entries moved a line otherwise than the export says."""

    transaction_id: Id
    msisdn: str
    state: str
    ledger: Annotated[int, Meta(description="credits - debits of subscriber:<msisdn>")]
    charging_system: Annotated[int, Meta(description="what the export moved on that line")]


class LedgerDayTotals(_Out):
    day: Annotated[str, Meta(examples=["2026-01-31"])]
    movements: int
    ledger: int
    charging_system: int
    difference: int


class ReconciliationLedger(_Out):
    """The ledger's subscriber entries of the settled movements against the export."""

    differences: list[LedgerMismatch]
    days: list[LedgerDayTotals]
    ok: bool


class Reconciliation(_Out):
    """Gestor's transactions against the charging system's ledger over a period; `ok`
    false (answered 409) when they disagree."""

    since: Time | None
    until: Time | None
    mismatches: list[Mismatch]
    unsettled: list[UnsettledTransaction]
    totals: ReconciliationTotals
    strict: bool
    ledger: ReconciliationLedger | None
    ok: bool


# -- whole examples (tests/unit/test_openapi.py checks them against their Structs) -------------

TRANSACTION_EXAMPLE: dict[str, Any] = {
    "id": "6f1c8f7e-3b9a-4c57-9f0e-2b8b8a1d2e3f", "msisdn": "5491100000001",
    "bono": {"id": "DATA_2GB_7D", "name": "2 GB for 7 days", "kind": "data"},
    "channel": "ussd", "state": "completed", "final": True, "price": 60000, "currency": "ARS",
    "operation": "debit_and_provision", "profile_id": "PREPAID", "rules_version": 1,
    "catalogue_version": 1, "reasons": [], "created_at": "2026-01-31T12:00:00.120000+00:00",
    "updated_at": "2026-01-31T12:00:00.410000+00:00",
    "history": [{"state": s, "at": f"2026-01-31T12:00:00.{ms}0000+00:00"} for s, ms in (
        ("received", 12), ("profiled", 18), ("validated", 19), ("charged", 30),
        ("completed", 41))],
    "links": {"self": "/v1/transactions/6f1c8f7e-3b9a-4c57-9f0e-2b8b8a1d2e3f",
              "mobile": "/v1/mobiles/5491100000001/transactions"},
    "kind": "purchase", "beneficiary": None, "amount": None, "fee": None, "step": 2,
}
TRANSFER_EXAMPLE: dict[str, Any] = {
    "id": "0b6e2a4c-7d1f-4e2a-9c3b-5f8d1e7a2b40", "msisdn": "5491100000001", "bono": None,
    "channel": "ussd", "state": "completed", "final": True, "price": 21000, "currency": "ARS",
    "operation": "transfer", "profile_id": "PREPAID", "rules_version": 1, "reasons": [],
    "created_at": "2026-01-31T12:05:00.100000+00:00",
    "updated_at": "2026-01-31T12:05:00.350000+00:00",
    "history": [{"state": s, "at": f"2026-01-31T12:05:00.{ms}0000+00:00"} for s, ms in (
        ("received", 10), ("profiled", 15), ("validated", 16), ("charged", 25),
        ("completed", 35))],
    "links": {"self": "/v1/transactions/0b6e2a4c-7d1f-4e2a-9c3b-5f8d1e7a2b40",
              "mobile": "/v1/mobiles/5491100000001/transactions"},
    "kind": "transfer", "beneficiary": "5491100000002", "amount": 20000, "fee": 1000,
    "catalogue_version": 1, "step": 2,
}
OFFERS_EXAMPLE: dict[str, Any] = {
    "msisdn": "5491100000001", "profile_id": "PREPAID", "rules_version": 1, "catalogue_version": 1,
    "currency": "ARS", "bonos": [
        {"id": "DATA_2GB_7D", "name": "2 GB for 7 days", "kind": "data", "price": 60000,
         "list_price": 60000, "currency": "ARS", "validity_days": 7, "data_mb": 2048,
         "voice_min": None, "sms": None, "operation": "debit_and_provision", "eligible": True,
         "reasons": []},
        {"id": "ROAMING_1GB", "name": "Roaming 1 GB", "kind": "data", "price": 150000,
         "list_price": 150000, "currency": "ARS", "validity_days": 3, "data_mb": 1024,
         "voice_min": None, "sms": None, "operation": "debit_and_provision",
         "eligible": False, "reasons": [{"code": "NOT_ELIGIBLE_PROFILE",
                                          "message": "not for this profile",
                                          "rule": "roaming-postpaid-only"}]},
    ],
}
CATALOGUE_CHANGES_EXAMPLE: dict[str, Any] = {
    "added": [], "retired": [], "repriced": [{"id": "DATA_2GB_7D", "from": 60000, "to": 55000}],
    "changed": ["DATA_2GB_7D"],
}
CATALOGUE_CHECK_EXAMPLE: dict[str, Any] = {
    "valid": True, "rules_version": 1, "active_version": 1, "bonos": 7, "currency": "ARS",
    "changes": CATALOGUE_CHANGES_EXAMPLE, "warnings": [],
}
CATALOGUE_CREATED_EXAMPLE: dict[str, Any] = {
    "version": 2, "status": "draft", "description": "DATA_2GB_7D at 550.00", "based_on": 1,
    "created_by": "ada", "created_at": "2026-01-31T12:00:00+00:00", "activated_by": None,
    "activated_at": None, "changes": CATALOGUE_CHANGES_EXAMPLE, "warnings": [],
}


class LedgerAccount(_Out):
    account: Annotated[str, Meta(examples=["subscriber:5491100000001"])]
    debits: Amount
    credits: Amount
    balance: Annotated[int, Meta(description="debits - credits (minor units)")]


class TrialBalance(_Out):
    from_: Time = msgspec.field(name="from")
    to: Time
    currency: str
    accounts: list[LedgerAccount]
    total_debits: Amount
    total_credits: Amount


class LedgerEntry(_Out):
    id: int
    at: Time
    transaction_id: Id
    movement: Annotated[str, Meta(examples=["debit", "refund", "credit", "advance", "fee",
                                            "recovery", "topup", "revenue", "reversal",
                                            "payable"])]
    account: str
    debit: Amount
    credit: Amount
    memo: str


class LedgerEntries(_Out):
    entries: list[LedgerEntry]
    next: str | None


class LedgerDifference(_Out):
    account: str
    closed_debits: Amount
    closed_credits: Amount
    debits: Amount
    credits: Amount


class LedgerClose(_Out):
    day: Annotated[str, Meta(examples=["2026-01-31"])]
    timezone: str
    from_: Time = msgspec.field(name="from")
    to: Time
    entries: int
    total_debits: Amount
    total_credits: Amount
    closed_at: Time
    closed_by: str
    accounts: list[LedgerAccount]
    created: bool
    matches: bool
    entries_now: int
    differences: list[LedgerDifference]
