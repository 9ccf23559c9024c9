"""Admin routes of the double-entry ledger (README "Ledger"): the trial balance of a period, its
entries (JSON, or CSV with `Accept: text/csv` or `?format=csv`), and the daily close.

    GET  /v1/admin/ledger/trial-balance?from=&to=
    GET  /v1/admin/ledger/entries?from=&to=&account=&transaction_id=&limit=&after=
    POST /v1/admin/ledger/closes {"day": "YYYY-MM-DD"}   (audited; again: checks the close)
    GET  /v1/admin/ledger/closes/<day>
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from quart import Response, request

from gestor.api import _periods as periods
from gestor.api import _registry as reg
from gestor.api import _resources as res
from gestor.api import _validate as validate
from gestor.api._auth import acting, require_admin
from gestor.api._decode import body_as
from gestor.api._problems import ApiProblem, json_response
from gestor.api._registry import Answer, documented
from gestor.api._requests import LedgerCloseRequest
from gestor.store import ACCOUNT, DayCheck, DayNotOver

if TYPE_CHECKING:
    from gestor.api._gestor_app import GestorApp
    from gestor.settings import Settings

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
_DIGITS = re.compile(r"[0-9]{1,19}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-?(?:[0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}")
ACCOUNT_COLUMNS = ("account", "debits", "credits", "balance")
ENTRY_COLUMNS = ("id", "at", "transaction_id", "movement", "account", "debit", "credit", "memo")
_PERIOD = (
    reg.query("from", {"type": "string"}, "start (inclusive): an RFC 3339 time, or a date "
              "YYYY-MM-DD (its start in `[purchase] timezone`); default `to` minus 7 days",
              "2026-01-01"),
    reg.query("to", {"type": "string"}, "end (exclusive), the same way; default now",
              "2026-02-01"),
    reg.query("format", {"type": "string", "enum": ["json", "csv"]}, "json (default) or csv "
              "(as `Accept: text/csv`)", "csv"),
)
_PERIOD_PROBLEMS = ("INVALID_TIME", "INVALID_PERIOD", "PERIOD_TOO_LONG", "INVALID_FORMAT")
_CSV_MEDIA = ("text/csv",)  # besides the JSON of the answer's Struct


def account_filter(raw: str | None) -> str | None:
    if raw is None or raw == "":
        return None
    if not ACCOUNT.fullmatch(raw):
        raise ApiProblem(422, "INVALID_ACCOUNT", "account must be a ledger account: "
                         "subscriber:<msisdn>, revenue:bono:<bono id>, revenue:fees, "
                         "advances:receivable, refunds:payable, clearing:in_flight or "
                         "recharges:platform", field="account")
    return raw


def _transaction(raw: str | None) -> uuid.UUID | None:
    if not raw:
        return None
    if not _UUID.fullmatch(raw):
        raise ApiProblem(422, "INVALID_TRANSACTION_ID", "transaction_id must be a UUID",
                         field="transaction_id")
    return uuid.UUID(raw)


def _after(raw: str | None) -> int:
    if not raw:
        return 0
    if not _DIGITS.fullmatch(raw) or int(raw) > validate.BIGINT_MAX:
        raise ApiProblem(422, "INVALID_AFTER", "after must be the id of a ledger entry (a "
                         f"whole number from 0 to {validate.BIGINT_MAX})", field="after")
    return int(raw)


def _csv(columns: tuple[str, ...], rows: list[dict[str, Any]],
         headers: dict[str, str] | None = None) -> Response:
    return Response(periods.csv_text(columns, rows), status=200, headers=headers,
                    content_type=periods.CSV)


def _check_answer(check: DayCheck, status: int | None = None,
                  headers: dict[str, str] | None = None) -> Response:
    return json_response(check.as_dict(), status or (200 if check.matches else 409), headers)


def register(app: GestorApp, settings: Settings) -> None:
    def period() -> tuple[datetime, datetime]:
        return periods.period(request.args, settings.timezone,
                              settings.ledger_max_period_days, datetime.now(UTC))

    @app.get("/v1/admin/ledger/trial-balance")
    @documented("The ledger's trial balance for a period", "Ledger",
                Answer(200, res.TrialBalance, "per account (CSV: one row per account); the "
                       "totals are equal", media=_CSV_MEDIA),
                params=_PERIOD, problems=_PERIOD_PROBLEMS)
    async def trial_balance() -> Response:
        """Per account, the debits and credits posted in `[from, to)` and the balance
        (debits - credits); `total_debits` equals `total_credits`."""
        require_admin(settings)
        csv = periods.wants_csv(request.args, request.headers.get("Accept"))
        since, until = period()
        accounts = [a.as_dict() for a in await app.runtime.store.trial_balance(since, until)]
        if csv:
            return _csv(ACCOUNT_COLUMNS, accounts)
        return json_response({
            "from": since.isoformat(), "to": until.isoformat(),
            "currency": app.runtime.catalogue.currency, "accounts": accounts,
            "total_debits": sum(a["debits"] for a in accounts),
            "total_credits": sum(a["credits"] for a in accounts),
        })

    @app.get("/v1/admin/ledger/entries")
    @documented("The ledger's entries for a period", "Ledger",
                Answer(200, res.LedgerEntries, "a page in posting order; `next` links the "
                       "following one (CSV: one row per entry, `Link: <...>; rel=\"next\"`)",
                       media=_CSV_MEDIA),
                params=(*_PERIOD,
                        reg.query("account", {"type": "string"}, "one account's entries",
                                  "revenue:fees"),
                        reg.query("transaction_id", {"type": "string", "format": "uuid"},
                                  "one movement's entries"),
                        reg.query("after", {"type": "integer", "minimum": 0},
                                  "the last id of the previous page", 0),
                        reg.limit(DEFAULT_LIMIT, MAX_LIMIT)),
                problems=(*_PERIOD_PROBLEMS, "INVALID_ACCOUNT", "INVALID_TRANSACTION_ID",
                          "INVALID_AFTER", "INVALID_LIMIT"))
    async def entries() -> Response:
        """The entries posted in `[from, to)`, of one `account` or one movement
        (`transaction_id`), oldest first."""
        require_admin(settings)
        args = request.args
        csv = periods.wants_csv(args, request.headers.get("Accept"))
        since, until = period()
        account = account_filter(args.get("account"))
        tx_id = _transaction(args.get("transaction_id"))
        after = _after(args.get("after"))
        limit = validate.limit(args.get("limit"), DEFAULT_LIMIT, MAX_LIMIT)
        found = await app.runtime.store.ledger_entries(
            since, until, account=account, transaction_id=tx_id, after_id=after,
            limit=limit + 1)  # one more: whether a next page exists
        next_page = None
        if len(found) > limit:
            found = found[:limit]
            query = {"from": since.isoformat(), "to": until.isoformat(), "account": account,
                     "transaction_id": None if tx_id is None else str(tx_id),
                     "format": args.get("format"), "after": found[-1].id, "limit": limit}
            next_page = "/v1/admin/ledger/entries?" + urlencode(
                {k: v for k, v in query.items() if v is not None})
        rows = [e.as_dict() for e in found]
        if csv:
            return _csv(ENTRY_COLUMNS, rows,
                        {"Link": f'<{next_page}>; rel="next"'} if next_page else None)
        return json_response({"entries": rows, "next": next_page})

    @app.post("/v1/admin/ledger/closes")
    @documented("Close a day of the ledger", "Ledger", (
        Answer(201, res.LedgerClose, "closed now: its per-account totals frozen",
               ("Location",)),
        Answer(200, res.LedgerClose, "closed before: the frozen totals match the entries"),
        Answer(409, res.LedgerClose, "closed before, and the entries no longer match "
               "(`differences`)")),
        body=LedgerCloseRequest,
        problems=("INVALID_DAY", "MISSING_FIELD", "DAY_NOT_OVER"))
    async def close_day() -> Response:
        """Freeze the day's per-account totals (the day in `[purchase] timezone`; audited as
        `ledger.close`). A day already closed is not closed again: the answer checks its
        frozen totals against the entries."""
        require_admin(settings)
        actor = acting(settings)
        body = body_as(LedgerCloseRequest,
                       validate.json_object(await request.get_data(cache=False, as_text=False)))
        day = periods.day(body.day)
        try:
            check = await app.runtime.store.close_ledger_day(day, settings.timezone, actor)
        except DayNotOver as exc:
            raise ApiProblem(409, "DAY_NOT_OVER", str(exc), field="day") from None
        if check.created:
            return _check_answer(check, 201, {"Location": f"/v1/admin/ledger/closes/{day}"})
        return _check_answer(check)

    @app.get("/v1/admin/ledger/closes/<raw_day>")
    @documented("A closed day of the ledger, checked against its entries", "Ledger", (
        Answer(200, res.LedgerClose, "the frozen totals match the entries"),
        Answer(409, res.LedgerClose, "the entries no longer match (`differences`)")),
        params=(reg.Param("raw_day", "path", {"type": "string", "format": "date"}, "the day",
                          True, "2026-01-31", "day"),),
        problems=("INVALID_DAY", "CLOSE_NOT_FOUND"))
    async def closed_day(raw_day: str) -> Response:
        require_admin(settings)
        day = periods.day(raw_day)
        check = await app.runtime.store.check_ledger_day(day)
        if check is None:
            raise ApiProblem(404, "CLOSE_NOT_FOUND", f"{day} was never closed", field="day")
        return _check_answer(check)
