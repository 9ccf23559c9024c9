"""Every problem `code` the API answers with, its status(es) and what it means: the OpenAPI
document lists, for each call, the codes it can answer, with an example of each.
tests/unit/test_openapi.py holds every code raised in gestor/api to an entry here.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class ProblemCode:
    code: str
    statuses: tuple[int, ...]
    meaning: str


def _codes(*entries: tuple[str, int | tuple[int, ...], str]) -> dict[str, ProblemCode]:
    return {code: ProblemCode(code, status if isinstance(status, tuple) else (status,), meaning)
            for code, status, meaning in entries}


PROBLEM_CODES: dict[str, ProblemCode] = _codes(
    # -- the request itself ------------------------------------------------------------------
    ("BAD_REQUEST", 400, "the HTTP request could not be understood"),
    ("HTTP_ERROR", 400, "an HTTP-level refusal no other handler named (not expected)"),
    ("INVALID_ENCODING", 400, "the body is not UTF-8"),
    ("INVALID_JSON", 400, "the body is not JSON (or not an object, or holds NaN/Infinity)"),
    ("DUPLICATE_KEY", 400, "a key appears twice in one JSON object"),
    ("JSON_TOO_DEEP", 400, "the body nests deeper than 16 levels"),
    ("INVALID_NUMBER", 400, "an integer beyond 64 bits or a number beyond a double"),
    ("INVALID_STRING", 400, "a string holds NUL or a lone surrogate; `field` is its path"),
    ("REQUEST_TIMEOUT", 408, "the body did not arrive in time"),
    ("REQUEST_TOO_LARGE", 413, "the body is over `[server] max_request_bytes`"),
    ("REQUEST_ENTITY_TOO_LARGE", 413, "the body is over `[server] max_request_bytes`"),
    ("UNSUPPORTED_MEDIA_TYPE", 415, "the body is not declared application/json (or "
     "application/toml where a rule set or a catalogue is taken), or not UTF-8"),
    ("NOT_FOUND", 404, "no such route"),
    ("METHOD_NOT_ALLOWED", 405, "the route does not take this method"),
    ("INVALID_CLIENT_ID", 400, "X-Client-Id (open mode) is not 1 to 64 printable ASCII "
     "characters"),
    # -- who is calling ----------------------------------------------------------------------
    ("UNAUTHORIZED", 401, "no API key where one is needed, or not a valid one"),
    ("KEY_REVOKED", (401, 409), "401: the API key used was revoked; 409: the key to revoke "
     "already was"),
    ("KEY_EXPIRED", 401, "the API key used has expired"),
    ("FORBIDDEN_ROLE", 403, "the operator key's role is below the call's (`role`)"),
    ("FORBIDDEN_SCOPE", 403, "the channel key's scopes do not cover the call (`scope`)"),
    # -- fields ------------------------------------------------------------------------------
    ("UNKNOWN_FIELD", 422, "the body has a field the call does not take"),
    ("MISSING_FIELD", 422, "a required field is missing"),
    ("INVALID_FIELD", 422, "a field is not of the kind the call takes"),
    ("INVALID_MSISDN", 422, "not an E.164 number"),
    ("INVALID_BONO_ID", 422, "not a bono id"),
    ("INVALID_CHANNEL", 422, "not a channel"),
    ("INVALID_AMOUNT", 422, "amount is not a whole number of cents above 0"),
    ("INVALID_REFERENCE", 422, "reference is not 1 to 100 printable ASCII characters"),
    ("INVALID_BENEFICIARY", 422, "the beneficiary is the payer (msisdn) itself"),
    ("UNKNOWN_BONO", 422, "no such bono in the catalogue"),
    ("INVALID_STATE", 422, "not a state this listing filters on"),
    ("INVALID_LIMIT", 422, "limit is out of range"),
    ("INVALID_SINCE", (400, 422), "since is not a whole number in range"),
    ("INVALID_BEFORE", 422, "before is not a whole number in range, or comes with since"),
    ("INVALID_KIND", 422, "not a list of alarm kinds (of movement kinds, for a mobile's "
     "transactions)"),
    ("INVALID_TIME", 422, "not an ISO 8601 time between 1970 and 9999"),
    ("INVALID_PERIOD", 422, "since is not before until (from is after to)"),
    ("PERIOD_TOO_LONG", 422, "from..to is longer than the configured maximum "
     "(`[ledger] max_period_days`, `[reports] max_days`)"),
    ("INVALID_FORMAT", 422, "format is not json or csv"),
    ("INVALID_ACCOUNT", 422, "not a ledger account (subscriber:<msisdn>, revenue:bono:<id>, "
     "revenue:fees, advances:receivable, refunds:payable, clearing:in_flight, "
     "recharges:platform)"),
    ("INVALID_DAY", 422, "day is not a date YYYY-MM-DD"),
    ("INVALID_EVERY", 422, "every is not hour or day"),
    ("INVALID_BY", 422, "by is not bono, channel, profile, segment or rule"),
    ("INVALID_FLAG", 422, "not true/false"),
    ("INVALID_ACTION", 422, "not an audit action or family"),
    ("INVALID_ACTOR", 422, "not a key's name or id"),
    ("INVALID_AFTER", 422, "not an audit (or ledger) entry id"),
    ("INVALID_CODE", 422, "not a restriction code (1-40 of A-Z, 0-9, _)"),
    ("INVALID_REASON", 422, "reason is not text up to 500 characters"),
    ("INVALID_NOTE", 422, "note is not text up to 500 characters"),
    ("INVALID_DESCRIPTION", 422, "description is not text up to 500 characters"),
    ("INVALID_BASED_ON", 422, "based_on is not a version number"),
    ("INVALID_RULES", 422, "the rule set was refused (`issues` lists every problem)"),
    ("INVALID_CATALOGUE", 422, "the catalogue was refused: `field` names the first problem's "
     "place (`bono[i].price`, `currency`, `source`), `issues` lists every problem"),
    ("CATALOGUE_BREAKS_RULES", 422, "the active rules (`rules_version`) do not compile "
     "against this catalogue (a rule names a bono it retires...): `field` is "
     "`rules.<rule id>`, `issues` lists every problem; nothing was changed"),
    ("INVALID_KEY", 422, "the key asked for is malformed (role and scopes together...)"),
    ("INVALID_TRANSACTION_ID", (400, 422), "the transaction id is not a UUID"),
    ("INVALID_VERSION", 400, "the version (of a rule set or a catalogue) is not a whole number "
     "1..2^31-1"),
    ("INVALID_ALARM_ID", (400, 422), "the alarm id is not a whole number 1..2^63-1"),
    ("INVALID_KEY_ID", 400, "the key id is not 12 hex digits"),
    # -- purchase headers --------------------------------------------------------------------
    ("IDEMPOTENCY_KEY_REQUIRED", 400, "a purchase or a movement needs an Idempotency-Key "
     "header"),
    ("INVALID_IDEMPOTENCY_KEY", 400, "Idempotency-Key is not 1 to 200 printable ASCII "
     "characters without spaces"),
    ("INVALID_PREFER", 400, "Prefer: wait=N without a number of seconds"),
    ("IDEMPOTENCY_KEY_REUSED", 422, "this Idempotency-Key was used for a different purchase "
     "or movement (for a top-up, `field` `reference`: that reference was notified with "
     "another msisdn or amount)"),
    # -- what exists, and its state ----------------------------------------------------------
    ("TRANSACTION_NOT_FOUND", 404, "no such transaction"),
    ("RULES_NOT_FOUND", 404, "no such rule-set version"),
    ("CATALOGUE_NOT_FOUND", 404, "no such catalogue version"),
    ("RESTRICTION_NOT_FOUND", 404, "the mobile has no such restriction"),
    ("ALARM_NOT_FOUND", 404, "no such alarm"),
    ("KEY_NOT_FOUND", 404, "no such key"),
    ("CLOSE_NOT_FOUND", 404, "the ledger day was never closed"),
    ("DAY_NOT_OVER", 409, "the day has not ended yet (a minute's grace included) in the "
     "configured timezone: it can't be closed"),
    ("PURCHASE_PENDING", 409, "the mobile has a purchase in flight (`pending_transaction`); "
     "nothing was done"),
    ("MOVEMENT_PENDING", 409, "a mobile the movement touches (`field`: msisdn or beneficiary) "
     "has a movement in flight (`pending_transaction`); nothing was done"),
    ("ALARM_NOT_OPEN", 409, "the alarm is resolved, or an event that is never open"),
    ("ALARM_ALREADY_ACKNOWLEDGED", 409, "someone acknowledged the alarm already "
     "(`acknowledged`)"),
    ("KEY_NAME_IN_USE", 409, "an active key already has this name"),
    ("KEY_NOT_ACTIVE", 409, "only an active key can be rotated"),
    ("VERSION_CONFLICT", 409, "the rules and the catalogue kept changing while one was "
     "activated; nothing was changed: try again"),
    # -- load and outages: nothing was done, retry after Retry-After -------------------------
    ("TOO_MANY_REQUESTS", 429, "too many requests for one mobile at once"),
    ("RATE_LIMITED", 429, "over a rate limit (`limit`, `retry_after`)"),
    ("BUSY", 503, "the worker is at capacity; nothing was done"),
    ("SERVICE_UNAVAILABLE", 503, "busy, restarting or the database did not answer; "
     "nothing was done"),
    ("DATABASE_UNAVAILABLE", 503, "the database is down; nothing was done"),
    ("PLATFORM_UNAVAILABLE", 503, "an external platform did not answer"),
    ("OUTCOME_UNKNOWN", 503, "the purchase may or may not have been accepted: ask again "
     "with the same Idempotency-Key"),
    ("INTERNAL_ERROR", 500, "a bug (never expected): logged under `request_id`"),
)
