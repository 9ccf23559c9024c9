"""Admin routes under /v1/admin: statistics and rule-set versions (list, get, create a draft,
validate, dry-run against msisdns or sample customers, activate, roll back, audit).

Every admin call needs the admin API key (`Authorization: Bearer <key>`, compared in constant
time, never logged): none or a wrong one is 401; a valid channel key is 403. Who made a change
(`acting()`) goes with it to the store, which writes the audit trail in the change's transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs
from quart import Response, request

from gestor.api import _registry as reg
from gestor.api import _resources as res
from gestor.api import _validate as validate
from gestor.api._auth import acting, require_admin
from gestor.api._decode import body_as
from gestor.api._problems import ApiProblem, json_response
from gestor.api._registry import Answer, documented
from gestor.api._requests import (
    DryRunRequest,
    DryRunSourceRequest,
    RestrictionRequest,
    RulesRequest,
)
from gestor.api._sources import submitted
from gestor.reconcile import run_reconciliation
from gestor.rulebook import VersionConflict, check_source, compile_source
from gestor.rules import (
    CompiledRules,
    PurchaseContext,
    RuleSetError,
    UnknownBonoError,
    customer_problems,
)
from gestor.settings import Settings
from gestor.store import RuleSetRecord

if TYPE_CHECKING:
    from gestor.api._gestor_app import GestorApp

def _rules_problem(exc: RuleSetError) -> ApiProblem:
    errors = [i for i in exc.issues if i.severity == "error"]
    first = errors[0] if errors else exc.issues[0]
    return ApiProblem(
        422, "INVALID_RULES", f"the rule set was refused: {first}",
        field=first.rule_id or first.section or "source",
        issues=[i.as_dict() for i in exc.issues],
    )


def _offers(rules: CompiledRules, ctx: PurchaseContext) -> dict[str, Any]:
    listing = rules.listing(ctx)
    return {
        "profile_id": listing.profile.profile_id,
        "bonos": [
            {"id": o.bono_id, "price": o.price, "operation": o.operation.operation,
             "eligible": o.eligible, "failures": [f.code for f in o.failures]}
            for o in listing.offers
        ],
    }


def _evaluate(rules: CompiledRules, ctx: PurchaseContext, bono_id: str | None) -> dict[str, Any]:
    out = _offers(rules, ctx)
    if bono_id is not None:
        decision = rules.decide(ctx, bono_id)
        out["decision"] = {
            "approved": decision.approved,
            "operation": decision.operation.as_dict() if decision.operation else None,
            "failures": [f.as_dict() for f in decision.failures],
        }
    return out


def register(app: GestorApp, settings: Settings) -> None:
    version_of = validate.rule_version

    async def record_of(version: int) -> RuleSetRecord:
        record = await app.runtime.store.rules(version)
        if record is None:
            raise ApiProblem(404, "RULES_NOT_FOUND", f"no rule-set version {version}",
                             field="version")
        return record

    @app.get("/v1/admin/statistics")
    @documented("The answering worker's statistics", "Operations",
                Answer(200, res.Statistics, "counters of actors, purchases, store, platforms..."))
    async def statistics() -> Response:
        require_admin(settings)
        rt = app.runtime
        return json_response({
            "actors": attrs.asdict(rt.purchases.actor_statistics()),
            "purchases": attrs.asdict(rt.purchases.statistics()),
            "store": attrs.asdict(rt.store.statistics()),
            "platforms": rt.platforms.statistics().as_dict(),
            "alarms": attrs.asdict(rt.alarms.statistics()),
            "recovery": attrs.asdict(rt.recoverer.statistics()),
            "webhooks": attrs.asdict(rt.webhooks.statistics()),
            "notifications": (attrs.asdict(rt.notifier.statistics())
                              if rt.notifier is not None else None),
            "rules": attrs.asdict(rt.rulebook.statistics()),
            "keys": attrs.asdict(app.keyring.statistics()),  # counts only, never a key
            "connections": (attrs.asdict(app.connections.statistics())
                            if app.connections is not None else None),
            "rate_limits": attrs.asdict(app.limiter.statistics()),
        })

    @app.get("/v1/admin/reconciliation")
    @documented("Reconcile with the charging system's ledger", "Operations", (
        Answer(200, res.Reconciliation, "they agree"),
        Answer(409, res.Reconciliation, "they disagree: `mismatches` (and with `strict`, "
               "`unsettled`)")),
        params=(reg.query("since", {"type": "string", "format": "date-time"},
                          "start of the period (ISO 8601; default 24 h ago)"),
                reg.query("until", {"type": "string", "format": "date-time"},
                          "end of the period (default now)"),
                reg.query("strict", {"type": "boolean"}, "count unsettled transactions "
                          "against `ok`", False)),
        problems=("INVALID_TIME", "INVALID_PERIOD", "INVALID_FLAG", "PLATFORM_UNAVAILABLE"))
    async def reconciliation() -> Response:
        """Gestor's transactions against the charging system's ledger for a period
        (`since`/`until`, ISO 8601; default the last 24 h; `strict=true` counts unsettled)."""
        require_admin(settings)
        now = datetime.now(UTC)
        since = validate.instant(request.args.get("since"), "since", now - timedelta(days=1))
        until = validate.instant(request.args.get("until"), "until", now)
        if since >= until:
            raise ApiProblem(422, "INVALID_PERIOD", "since must be before until", field="since")
        strict = validate.flag(request.args.get("strict"), "strict")
        report = await run_reconciliation(app.runtime.store, app.runtime.platforms, since,
                                          until, strict=strict, timezone=settings.timezone)
        return json_response(report.as_dict(), 200 if report.ok else 409)

    @app.get("/v1/admin/rules")
    @documented("Rule-set versions", "Rules", Answer(200, res.RuleSets, "every version"))
    async def list_rules() -> Response:
        require_admin(settings)
        records = await app.runtime.store.rule_sets()
        return json_response({
            "active_version": app.runtime.rulebook.current.version,
            "versions": [r.summary() for r in records],
        })

    @app.get("/v1/admin/rules/<raw>")
    @documented("A rule-set version, its source and audit", "Rules",
                Answer(200, res.RuleSet, "the version"), params=(reg.RULES_VERSION,),
                problems=("INVALID_VERSION", "RULES_NOT_FOUND"))
    async def get_rules(raw: str) -> Response:
        require_admin(settings)
        record = await record_of(version_of(raw))
        audit = await app.runtime.store.rules_audit(record.version)
        return json_response({
            **record.summary(), "source": record.source,
            "audit": [{"action": a.action, "actor": a.actor, "at": a.at.isoformat()}
                      for a in audit],
        })

    @app.post("/v1/admin/rules/validate")
    @documented("Check a rule set without storing it", "Rules",
                Answer(200, res.RulesCheck, "valid (with its warnings)"), body=RulesRequest,
                toml=reg.RULES_TOML, problems=("INVALID_RULES", "MISSING_FIELD"))
    async def validate_rules() -> Response:
        require_admin(settings)
        source = (await submitted(RulesRequest, "rule set")).source
        try:
            warnings = check_source(source, app.runtime.catalogue, settings.timezone)
        except RuleSetError as exc:
            raise _rules_problem(exc) from None
        return json_response({"valid": True, "warnings": [w.as_dict() for w in warnings]})

    @app.post("/v1/admin/rules")
    @documented("Store a rule set as a draft", "Rules",
                Answer(201, res.RuleSetCreated, "the draft (with its warnings)", ("Location",)),
                body=RulesRequest, toml=reg.RULES_TOML,
                problems=("INVALID_RULES", "MISSING_FIELD", "RULES_NOT_FOUND"))
    async def create_rules() -> Response:
        require_admin(settings)
        actor = acting(settings)
        body = await submitted(RulesRequest, "rule set")
        try:
            warnings = check_source(body.source, app.runtime.catalogue, settings.timezone)
        except RuleSetError as exc:
            raise _rules_problem(exc) from None
        if body.based_on is not None:
            await record_of(body.based_on)
        record = await app.runtime.store.create_rules(body.source, body.description, actor,
                                                      body.based_on)
        return json_response(
            {**record.summary(), "warnings": [w.as_dict() for w in warnings]}, 201,
            {"Location": f"/v1/admin/rules/{record.version}"},
        )

    @app.post("/v1/admin/rules/<raw>/activate")
    @documented("Activate a rule-set version (or roll back to one)", "Rules",
                Answer(200, res.RuleSetSummary, "now active in every worker"),
                params=(reg.RULES_VERSION,),
                problems=("INVALID_VERSION", "RULES_NOT_FOUND", "INVALID_RULES",
                          "VERSION_CONFLICT"))
    async def activate_rules(raw: str) -> Response:
        require_admin(settings)
        actor = acting(settings)
        version = version_of(raw)
        await record_of(version)
        try:
            record = await app.runtime.rulebook.activate(version, actor)
        except RuleSetError as exc:
            raise _rules_problem(exc) from None
        except VersionConflict as exc:
            raise ApiProblem(409, "VERSION_CONFLICT", f"{exc}; try again",
                             field="version") from None
        assert record is not None
        return json_response(record.summary())

    @app.post("/v1/admin/rules/<raw>/dry-run")
    @documented("Dry-run a stored version against the active one", "Rules",
                Answer(200, res.DryRun, "each subject under both"), body=DryRunRequest,
                params=(reg.RULES_VERSION,),
                problems=("INVALID_VERSION", "RULES_NOT_FOUND", "UNKNOWN_BONO",
                          "PLATFORM_UNAVAILABLE", "TOO_MANY_REQUESTS"),
                body_example={"msisdns": ["5491100000001"], "bono_id": "DATA_2GB_7D"})
    async def dry_run(raw: str) -> Response:
        require_admin(settings)
        draft = app.runtime.rulebook.compiled(await record_of(version_of(raw)))
        body = body_as(DryRunRequest,
                       validate.json_object(await request.get_data(cache=False, as_text=False)))
        return json_response(await _dry_run(draft, body))

    @app.post("/v1/admin/rules/dry-run")
    @documented("Dry-run a rule set given inline against the active one", "Rules",
                Answer(200, res.DryRun, "each subject under both"), body=DryRunSourceRequest,
                problems=("INVALID_RULES", "UNKNOWN_BONO", "PLATFORM_UNAVAILABLE",
                          "TOO_MANY_REQUESTS"),
                body_example={"source": "description = 'weekend promo'\n",
                              "msisdns": ["5491100000001"], "bono_id": "DATA_2GB_7D"})
    async def dry_run_source() -> Response:
        """Dry run of a rule set given inline (`source`), without storing it."""
        require_admin(settings)
        body = body_as(DryRunSourceRequest,
                       validate.json_object(await request.get_data(cache=False, as_text=False)))
        try:
            draft = compile_source(body.source, app.runtime.catalogue, 0, settings.timezone)
        except RuleSetError as exc:
            raise _rules_problem(exc) from None
        return json_response(await _dry_run(draft, body))

    async def _dry_run(draft: CompiledRules, body: DryRunRequest) -> dict[str, Any]:
        rt = app.runtime
        active = rt.rulebook.current
        channel = validate.channel(body.channel)
        bono_id = body.bono_id
        if bono_id is not None and rt.catalogue.get(bono_id) is None:
            raise ApiProblem(422, "UNKNOWN_BONO", f"there is no bono {bono_id!r}",
                             field="bono_id")
        msisdns, customers = body.msisdns, body.customers
        if (not msisdns and not customers) or len(msisdns) + len(customers) > 100:
            raise ApiProblem(422, "INVALID_FIELD", "give 1 to 100 msisdns and/or customers",
                             field="msisdns")
        now = datetime.now(UTC)
        contexts: list[tuple[dict[str, Any], PurchaseContext]] = []
        for i, raw_msisdn in enumerate(msisdns):
            msisdn = validate.msisdn(raw_msisdn, f"msisdns[{i}]")
            view = await rt.purchases.view(msisdn)
            customer = await rt.purchases.deps.profiles.get(msisdn)
            contexts.append(({"msisdn": msisdn},
                             rt.purchases.deps.context(customer, channel, view, now)))
        for i, customer in enumerate(customers):
            problems = customer_problems(customer)
            if problems:
                key, problem = problems[0]
                raise ApiProblem(422, "INVALID_FIELD", problem, field=f"customers[{i}].{key}")
            contexts.append(({"customer": i},
                             PurchaseContext(customer=dict(customer), channel=channel, now=now)))
        results = []
        try:
            for subject, ctx in contexts:
                under_draft = _evaluate(draft, ctx, bono_id)
                under_active = _evaluate(active, ctx, bono_id)
                results.append({**subject, "draft": under_draft, "active": under_active,
                                "changed": under_draft != under_active})
        except UnknownBonoError as exc:  # pragma: no cover - checked above
            raise ApiProblem(422, "UNKNOWN_BONO", str(exc), field="bono_id") from None
        return {"version": draft.version, "active_version": active.version, "results": results}




def register_restrictions(app: GestorApp, settings: Settings) -> None:
    """Per-subscriber restrictions: codes the rules see as `restrictions` (e.g. BLACKLISTED,
    NO_DATA_BONOS). Changes reach every worker's live subscriber actor at once."""

    @app.get("/v1/admin/mobiles/<raw_msisdn>/restrictions")
    @documented("A mobile's restrictions", "Restrictions",
                Answer(200, res.Restrictions, "its restrictions"), params=(reg.MSISDN,),
                problems=("INVALID_MSISDN",))
    async def list_restrictions(raw_msisdn: str) -> Response:
        require_admin(settings)
        msisdn = validate.msisdn(raw_msisdn)
        items = await app.runtime.store.restrictions(msisdn)
        return json_response({"msisdn": msisdn, "restrictions": [r.as_dict() for r in items]})

    @app.put("/v1/admin/mobiles/<raw_msisdn>/restrictions/<code>")
    @documented("Restrict a mobile (or change a restriction)", "Restrictions",
                Answer(200, res.MobileRestriction, "the restriction, in force in every worker"),
                body=RestrictionRequest, body_required=False,
                params=(reg.MSISDN, reg.RESTRICTION_CODE),
                problems=("INVALID_MSISDN", "INVALID_CODE", "INVALID_TIME"))
    async def put_restriction(raw_msisdn: str, code: str) -> Response:
        require_admin(settings)
        actor = acting(settings)
        msisdn = validate.msisdn(raw_msisdn)
        code = validate.restriction_code(code)
        raw = await request.get_data(cache=False, as_text=False)
        body = body_as(RestrictionRequest, validate.json_object(raw) if raw else {})
        reason, until_raw = body.reason, body.until
        until = validate.instant(until_raw, "until", datetime.now(UTC)) if until_raw else None
        restriction = await app.runtime.store.restrict(
            msisdn, code, f"{reason or ''} (by {actor.name})".strip(), until, actor)
        return json_response({"msisdn": msisdn, **restriction.as_dict()})

    @app.delete("/v1/admin/mobiles/<raw_msisdn>/restrictions/<code>")
    @documented("Lift a restriction", "Restrictions", Answer(204, None, "lifted"),
                params=(reg.MSISDN, reg.RESTRICTION_CODE),
                problems=("INVALID_MSISDN", "INVALID_CODE", "RESTRICTION_NOT_FOUND"))
    async def delete_restriction(raw_msisdn: str, code: str) -> Response:
        require_admin(settings)
        actor = acting(settings)
        msisdn = validate.msisdn(raw_msisdn)
        code = validate.restriction_code(code)
        if await app.runtime.store.lift(msisdn, code, actor) is None:
            raise ApiProblem(404, "RESTRICTION_NOT_FOUND", f"{msisdn} has no restriction {code}",
                             field="code")
        return Response("", status=204)
