"""The request bodies the API takes, as msgspec Structs: `_decode` validates a body against
one, and the OpenAPI document (`_openapi`) publishes the same Struct's JSON Schema.

Each field's `description` is written to follow "<field> must be ..." (a refusal's `detail`),
and its `x-problem` names the `code` of that refusal (`INVALID_MSISDN`...): the schema is the
one place that says what a field takes and how a wrong value is answered. Checks no schema can
state (an msisdn's normal form, a time's range, a rule set that compiles) stay in the route.
"""

from __future__ import annotations

import tomllib
from typing import Annotated, Any, Literal, get_args

import msgspec
from msgspec import Meta

#: An E.164 number: `_msisdn` matches it in full, the schemas publish it.
MSISDN_PATTERN = r"\+?([1-9][0-9]{7,14})"
#: Largest value of PostgreSQL's integer (rule-set versions).
INTEGER_MAX = 2**31 - 1
#: Longest key expiry or rotation grace, in seconds.
MAX_SECONDS = 10 * 365 * 86400
#: Largest amount a movement may name (minor units): PostgreSQL's bigint, halved so that an
#: amount plus its fee still fits.
MAX_AMOUNT = 2**62


def _meta(problem: str, description: str, *examples: Any, **constraints: Any) -> Meta:
    extra: dict[str, Any] = {"x-problem": problem}
    if examples:
        extra["examples"] = list(examples)
    return Meta(description=description, extra_json_schema=extra, **constraints)


Msisdn = Annotated[str, _meta(
    "INVALID_MSISDN", "an E.164 number: 8 to 15 digits with the country code, an optional "
    "leading +, no leading zero", "5491100000001", pattern=f"^{MSISDN_PATTERN}$")]
BonoId = Annotated[str, _meta(
    "INVALID_BONO_ID", "a non-empty string of at most 64 characters (a bono of the catalogue)",
    "DATA_2GB_7D", min_length=1, max_length=64)]
ChannelName = Literal["api", "app", "ivr", "retail", "ussd", "web"]
Channel = Annotated[ChannelName, _meta("INVALID_CHANNEL",
                                       f"one of {', '.join(get_args(ChannelName))}", "ussd")]
Note = Annotated[str, _meta("INVALID_NOTE", "text up to 500 characters", "on it",
                            max_length=500)]
Seconds = Annotated[int, _meta("INVALID_FIELD", f"whole seconds from 0 to "
                                                f"{MAX_SECONDS}", 3600,
                               ge=0, le=MAX_SECONDS)]
Scopes = Annotated[list[Annotated[str, Meta(max_length=64)]], _meta(
    "INVALID_FIELD", "a list of up to 64 strings", max_length=64)]


Customer = Annotated[dict[str, Any], _meta(
    "INVALID_FIELD", "a customer: a JSON object of a profile's attributes",
    {"profile_id": "PREPAID", "balance": 100000})]


Beneficiary = Annotated[str, _meta(
    "INVALID_MSISDN", "an E.164 number: 8 to 15 digits with the country code, an optional "
    "leading +, no leading zero, and another mobile than msisdn",
    "5491100000002", pattern=f"^{MSISDN_PATTERN}$")]
Amount = Annotated[int, _meta(
    "INVALID_AMOUNT", "a whole number of cents above 0 (at most 2^62)", 20000, ge=1, le=MAX_AMOUNT)]
Reference = Annotated[str, _meta(
    "INVALID_REFERENCE", "1 to 100 printable ASCII characters (no spaces)",
    "RCH-20260131-0001", pattern=r"^[\x21-\x7e]{1,100}$", min_length=1, max_length=100)]


class PurchaseRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Buy a bono for a mobile."""

    msisdn: Msisdn
    bono_id: BonoId
    #: Absent or null: `api`, or the only channel of a key limited to one.
    channel: Channel | None = None
    #: A bono for another mobile: `msisdn` pays, the beneficiary gets the bundle.
    beneficiary: Beneficiary | None = None


class TransferRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Airtime for another mobile: `msisdn` pays `amount` and the rules' fee, `beneficiary`
    is credited `amount`."""

    msisdn: Msisdn
    beneficiary: Beneficiary
    amount: Amount
    channel: Channel | None = None


class AdvanceRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A balance advance: `msisdn` is credited `amount`, owed with the rules' fee until its
    top-ups collect it."""

    msisdn: Msisdn
    amount: Amount
    channel: Channel | None = None


class TopupRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The recharge platform's notice of a top-up of `amount` to `msisdn`, named by its
    `reference` there (one top-up per reference): it collects what advances owe."""

    msisdn: Msisdn
    amount: Amount
    reference: Reference
    channel: Channel | None = None


class NoteRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """An optional note on an alarm's acknowledgement or resolution."""

    note: Note = ""


class RestrictionRequest(msgspec.Struct, kw_only=True):
    """Why a mobile is restricted, and until when (ISO 8601; absent: until lifted)."""

    reason: Annotated[str, _meta("INVALID_REASON", "text up to 500 characters",
                                 "fraud report 1234", max_length=500)] | None = None
    until: Annotated[str, _meta("INVALID_TIME", "an ISO 8601 time",
                                "2026-12-31T23:59:59Z")] | None = None


Description = Annotated[str, _meta("INVALID_DESCRIPTION", "text up to 500 chars",
                                   "weekend promo", max_length=500)]
BasedOn = Annotated[int, _meta("INVALID_BASED_ON", "a version number", 1, ge=1,
                               le=INTEGER_MAX)]
#: A source's text: not empty, not only blanks (a character that is not a space).
NOT_BLANK = r"\S"
RULES_TOML_EXAMPLE = "description = 'weekend promo'\n"
#: The shipped catalogue (config/bonos.toml) with DATA_2GB_7D at 550.00, one bono a line.
CATALOGUE_TOML_EXAMPLE = "\n".join((
    'currency = "ARS"',
    "bono = [",
    '  {id = "DATA_500MB_1D", name = "500 MB for 1 day", kind = "data", price = 15000, '
    "validity_days = 1, data_mb = 500},",
    '  {id = "DATA_2GB_7D", name = "2 GB for 7 days", kind = "data", price = 55000, '
    "validity_days = 7, data_mb = 2048},",
    '  {id = "DATA_10GB_30D", name = "10 GB for 30 days", kind = "data", price = 200000, '
    "validity_days = 30, data_mb = 10240},",
    '  {id = "VOICE_100MIN_7D", name = "100 minutes for 7 days", kind = "voice", '
    "price = 40000, validity_days = 7, voice_min = 100},",
    '  {id = "SMS_200_30D", name = "200 SMS for 30 days", kind = "sms", price = 20000, '
    "validity_days = 30, sms = 200},",
    '  {id = "COMBO_5GB_300MIN_30D", name = "5 GB + 300 minutes + 300 SMS for 30 days", '
    'kind = "combo", price = 250000, validity_days = 30, data_mb = 5120, voice_min = 300, '
    "sms = 300},",
    '  {id = "ROAMING_1GB_7D", name = "Roaming: 1 GB for 7 days", kind = "data", '
    "price = 350000, validity_days = 7, data_mb = 1024, roaming = true},",
    "]",
    "",
))
#: The same catalogue as a JSON document (`bonos`, as a version's `catalogue` is answered).
CATALOGUE_EXAMPLE: dict[str, Any] = {
    "currency": "ARS", "bonos": tomllib.loads(CATALOGUE_TOML_EXAMPLE)["bono"]}


class RulesRequest(msgspec.Struct, kw_only=True):
    """A rule set as JSON (it may also be sent as the TOML document itself,
    `Content-Type: application/toml`)."""

    source: Annotated[str, _meta("MISSING_FIELD", "rule-set TOML (required, not blank)",
                                 RULES_TOML_EXAMPLE, min_length=1, pattern=NOT_BLANK)]
    description: Description = ""
    based_on: BasedOn | None = None


class CatalogueRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A bono catalogue as JSON: its TOML text (`source`) or the same document as a JSON
    object (`catalogue`), one of the two. It may also be sent as the TOML document itself
    (`Content-Type: application/toml`). The catalogue's own entries are checked by the
    catalogue's parser, every problem at once (`INVALID_CATALOGUE`, naming `bono[i].field`)."""

    source: Annotated[str, _meta(
        "MISSING_FIELD", "catalogue TOML, or the JSON document as text (required unless "
        "catalogue is given; not blank)", CATALOGUE_TOML_EXAMPLE, min_length=1,
        pattern=NOT_BLANK)] | None = None
    catalogue: Annotated[dict[str, Any], _meta(
        "INVALID_FIELD", "a JSON object: `currency` and `bonos` (or `bono`), each bono as in "
        "config/bonos.toml (required unless source is given)",
        CATALOGUE_EXAMPLE)] | None = None
    description: Description = ""
    based_on: BasedOn | None = None


class DryRunRequest(msgspec.Struct, kw_only=True):
    """Subjects to evaluate a rule set on: 1 to 100 msisdns and/or sample customers."""

    msisdns: Annotated[list[Msisdn], _meta("INVALID_FIELD", "a list of msisdns",
                                           max_length=100)] = []
    customers: Annotated[list[Customer], _meta(
        "INVALID_FIELD", "a list of customers (JSON objects)", max_length=100)] = []
    channel: Channel | None = None
    bono_id: BonoId | None = None


class DryRunSourceRequest(DryRunRequest, kw_only=True):
    """A dry run of a rule set given inline, not stored."""

    source: Annotated[str, _meta("MISSING_FIELD", "rule-set TOML (required, not blank)",
                                 RULES_TOML_EXAMPLE, min_length=1, pattern=NOT_BLANK)]


class KeyRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A new API key: an operator key (`role`) or a channel key (scopes)."""

    name: Annotated[str, _meta("INVALID_FIELD", "text", "web-shop")]
    role: Annotated[str, _meta("INVALID_FIELD", "text: viewer, operator or admin (an "
                               "operator key)", "viewer")] | None = None
    channels: Scopes = []
    calls: Scopes = []
    msisdn_prefixes: Scopes = []
    read: Annotated[str, _meta("INVALID_FIELD", "text: own or all", "own")] | None = None
    expires_in: Seconds | None = None


class RotateRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """How long the old key stays valid beside the new one."""

    grace: Seconds = 86400


class LedgerCloseRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The day to close (a date in `[purchase] timezone`)."""

    day: Annotated[str, _meta("INVALID_DAY", "a date YYYY-MM-DD", "2026-01-31",
                              pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
