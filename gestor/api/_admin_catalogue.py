"""Admin routes for the bono catalogue's versions under /v1/admin/catalogue: list, get,
validate (a dry check against the active rules), create a draft, activate, roll back (activate
an earlier version). Roles as the rules' routes (`_auth.ROUTE_ROLES`); every change is audited
in its own transaction (`catalogue.create`, `catalogue.activate`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quart import Response

from gestor.api import _registry as reg
from gestor.api import _resources as res
from gestor.api import _validate as validate
from gestor.api._auth import acting, require_admin
from gestor.api._problems import ApiProblem, json_response
from gestor.api._registry import Answer, Toml, documented
from gestor.api._requests import CATALOGUE_TOML_EXAMPLE, CatalogueRequest
from gestor.api._sources import catalogue_source, submitted
from gestor.catalogue import Catalogue, CatalogueError, parse_source, problem_at
from gestor.rulebook import RuleBook, VersionConflict
from gestor.rules import RuleIssue, RuleSetError
from gestor.settings import Settings
from gestor.store import VersionRecord

if TYPE_CHECKING:
    from gestor.api._gestor_app import GestorApp


CATALOGUE_TOML = Toml("the catalogue's TOML document (as config/bonos.toml)",
                      CATALOGUE_TOML_EXAMPLE)
#: A body that succeeds against the shipped rules and catalogue: the catalogue with one bono
#: repriced (every bono the shipped rules name kept).
BODY_EXAMPLE = {"source": CATALOGUE_TOML_EXAMPLE, "description": "DATA_2GB_7D at 550.00",
                "based_on": 1}


def _catalogue_problem(exc: CatalogueError) -> ApiProblem:
    """422 naming the first problem's entry and field; `issues` lists every one."""
    issues = []
    for text in exc.problems:
        position, bono_id, field = problem_at(text)
        issues.append({"severity": "error", "entry": bono_id or (
            f"#{position}" if position else None), "field": field, "message": text})
    position, _, field = problem_at(exc.problems[0])
    return ApiProblem(422, "INVALID_CATALOGUE", f"the catalogue was refused: {exc.problems[0]}",
                      field=f"bono[{position - 1}].{field}" if position else field,
                      issues=issues)


def _rule_issue(issue: RuleIssue) -> dict[str, Any]:
    return {**issue.as_dict(), "entry": issue.rule_id, "field": issue.field or issue.section}


def _rules_problem(exc: RuleSetError, rules_version: int) -> ApiProblem:
    errors = [i for i in exc.issues if i.severity == "error"] or list(exc.issues)
    first = errors[0]
    return ApiProblem(
        422, "CATALOGUE_BREAKS_RULES",
        f"the active rules (version {rules_version}) do not compile against this catalogue: "
        f"{first}", field=f"rules.{first.rule_id or first.section or 'source'}",
        rules_version=rules_version, issues=[_rule_issue(i) for i in exc.issues],
    )


def _changes(active: Catalogue, new: Catalogue) -> dict[str, Any]:
    """What `new` changes in the active catalogue: bonos added, retired and repriced."""
    repriced = [{"id": b.id, "from": active[b.id].price, "to": b.price}
                for b in new if b.id in active and active[b.id].price != b.price]
    changed = [b.id for b in new if b.id in active and active[b.id] != b]
    return {
        "added": [b.id for b in new if b.id not in active],
        "retired": [b.id for b in active if b.id not in new],
        "repriced": repriced,
        "changed": changed,
    }


def _check(book: RuleBook, source: str) -> dict[str, Any]:
    """Parse `source` and compile the active rules against it: what it changes and the
    warnings (retired bonos, rules naming a bono it does not have), or a 422."""
    try:
        catalogue = parse_source(source)
    except CatalogueError as exc:
        raise _catalogue_problem(exc) from None
    active = book.catalogue
    rules_record = book.active_rules
    try:
        compiled = book.check_catalogue(catalogue)
    except RuleSetError as exc:
        raise _rules_problem(exc, rules_record.version) from None
    changes = _changes(active, catalogue)
    warnings = [_rule_issue(w) for w in compiled.warnings]
    warnings += [{"severity": "warning", "entry": bono_id, "field": "id", "section": "bono",
                  "rule_id": None, "message": f"bono {bono_id!r} is retired: it is in the "
                  f"active catalogue (version {active.version}) and not in this one"}
                 for bono_id in changes["retired"]]
    return {"valid": True, "rules_version": rules_record.version,
            "active_version": active.version, "bonos": len(catalogue),
            "currency": catalogue.currency, "changes": changes, "warnings": warnings}


def register(app: GestorApp, settings: Settings) -> None:
    version_of = validate.rule_version  # a version in a path, for either kind

    async def record_of(version: int) -> VersionRecord:
        record = await app.runtime.store.catalogue_versions.get(version)
        if record is None:
            raise ApiProblem(404, "CATALOGUE_NOT_FOUND", f"no catalogue version {version}",
                             field="version")
        return record

    @app.get("/v1/admin/catalogue")
    @documented("Catalogue versions", "Catalogue",
                Answer(200, res.CatalogueVersions, "every version"))
    async def list_catalogues() -> Response:
        require_admin(settings)
        records = await app.runtime.store.catalogue_versions.listing()
        return json_response({
            "active_version": app.runtime.rulebook.catalogue.version,
            "versions": [r.summary() for r in records],
        })

    @app.get("/v1/admin/catalogue/<raw>")
    @documented("A catalogue version: its source, its bonos and its audit", "Catalogue",
                Answer(200, res.CatalogueVersion, "the version"),
                params=(reg.CATALOGUE_VERSION,),
                problems=("INVALID_VERSION", "CATALOGUE_NOT_FOUND"))
    async def get_catalogue(raw: str) -> Response:
        require_admin(settings)
        record = await record_of(version_of(raw))
        audit = await app.runtime.store.catalogue_versions.audit(record.version)
        catalogue = app.runtime.rulebook.catalogue_of(record)
        return json_response({
            **record.summary(), "source": record.source, "catalogue": catalogue.as_dict(),
            "audit": [{"action": a.action, "actor": a.actor, "at": a.at.isoformat()}
                      for a in audit],
        })

    @app.post("/v1/admin/catalogue/validate")
    @documented("Check a catalogue against the active rules without storing it", "Catalogue",
                Answer(200, res.CatalogueCheck, "valid: what it would change, and its warnings",
                       example=res.CATALOGUE_CHECK_EXAMPLE),
                body=CatalogueRequest, toml=CATALOGUE_TOML,
                problems=("INVALID_CATALOGUE", "CATALOGUE_BREAKS_RULES", "MISSING_FIELD",
                          "INVALID_FIELD"),
                body_example=BODY_EXAMPLE)
    async def validate_catalogue() -> Response:
        """A catalogue (TOML, or JSON `source` or `catalogue`) parsed and checked against the
        active rules: nothing is stored (`based_on` is not looked at)."""
        require_admin(settings)
        source = catalogue_source(await submitted(CatalogueRequest, "catalogue"))
        return json_response(_check(app.runtime.rulebook, source))

    @app.post("/v1/admin/catalogue")
    @documented("Store a catalogue as a draft", "Catalogue",
                Answer(201, res.CatalogueCreated, "the draft: what it would change, and its "
                       "warnings", ("Location",), res.CATALOGUE_CREATED_EXAMPLE),
                body=CatalogueRequest, toml=CATALOGUE_TOML,
                problems=("INVALID_CATALOGUE", "CATALOGUE_BREAKS_RULES", "MISSING_FIELD",
                          "INVALID_FIELD", "CATALOGUE_NOT_FOUND"),
                body_example=BODY_EXAMPLE)
    async def create_catalogue() -> Response:
        """Stored as submitted (a JSON `catalogue` as its JSON text) once it parses and the
        active rules compile against it; activate it to put it on sale."""
        require_admin(settings)
        actor = acting(settings)
        body = await submitted(CatalogueRequest, "catalogue")
        source = catalogue_source(body)
        checked = _check(app.runtime.rulebook, source)
        if body.based_on is not None:
            await record_of(body.based_on)
        record = await app.runtime.store.catalogue_versions.create(
            source, body.description, actor, body.based_on)
        return json_response(
            {**record.summary(), "changes": checked["changes"],
             "warnings": checked["warnings"]}, 201,
            {"Location": f"/v1/admin/catalogue/{record.version}"},
        )

    @app.post("/v1/admin/catalogue/<raw>/activate")
    @documented("Activate a catalogue version (or roll back to one)", "Catalogue",
                Answer(200, res.CatalogueSummary, "now on sale in every worker"),
                params=(reg.CATALOGUE_VERSION,),
                problems=("INVALID_VERSION", "CATALOGUE_NOT_FOUND", "CATALOGUE_BREAKS_RULES",
                          "VERSION_CONFLICT"))
    async def activate_catalogue(raw: str) -> Response:
        """Refused (`CATALOGUE_BREAKS_RULES`, nothing changed) if the active rules do not
        compile against it, e.g. when they name a bono it retires."""
        require_admin(settings)
        actor = acting(settings)
        version = version_of(raw)
        await record_of(version)
        book = app.runtime.rulebook
        try:
            record = await book.activate_catalogue(version, actor)
        except RuleSetError as exc:
            raise _rules_problem(exc, book.active_rules.version) from None
        except VersionConflict as exc:
            raise ApiProblem(409, "VERSION_CONFLICT", f"{exc}; try again",
                             field="version") from None
        assert record is not None
        return json_response(record.summary())
