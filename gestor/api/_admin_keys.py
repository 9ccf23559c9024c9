"""Admin routes over API keys (role `admin`), the same actions as `gestor keys`:

* `GET /v1/admin/keys[?all=true]`: the keys (active ones; `all`: revoked and expired too),
  never their secrets;
* `POST /v1/admin/keys` `{"name", "role"}` or `{"name", "channels", "calls",
  "msisdn_prefixes", "read", "expires_in"}`: 201 with the raw key in `key`, shown this once
  (`Cache-Control: no-store`);
* `POST /v1/admin/keys/<id>/revoke`: at once, in every worker;
* `POST /v1/admin/keys/<id>/rotate` `{"grace": seconds}` (default 86400): a new key (201, `key`)
  for the same name and scopes; the old one stays valid for the grace period.

Each is audited under the acting key's id and name, in the change's transaction.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from quart import Response, request

from gestor.api import _registry as reg
from gestor.api import _resources as res
from gestor.api import _validate as validate
from gestor.api._auth import acting
from gestor.api._decode import body_as
from gestor.api._problems import ApiProblem, json_response
from gestor.api._registry import Answer, documented
from gestor.api._requests import KeyRequest, RotateRequest
from gestor.keys import KeyRequestError, key_request, replacement
from gestor.settings import Settings
from gestor.store import KeyRecord, KeyStore, NewKey

if TYPE_CHECKING:
    from gestor.api._gestor_app import GestorApp

_ID = re.compile(r"[0-9a-f]{12}")
NO_STORE = {"Cache-Control": "no-store"}


def _key_id(raw: str) -> str:
    if not _ID.fullmatch(raw):
        raise ApiProblem(400, "INVALID_KEY_ID", "a key id is 12 hex digits (after gk_)",
                         field="id")
    return raw


async def _body() -> dict[str, Any]:
    raw = await request.get_data(cache=False, as_text=False)
    return validate.json_object(raw) if raw.strip() else {}


KEY_ID = reg.Param("key_id", "path", {"type": "string", "pattern": "^[0-9a-f]{12}$"},
                   "the key's id (12 hex digits, after gk_)", True, "0123456789ab", "id")


def register(app: GestorApp, settings: Settings) -> None:
    def keys() -> KeyStore:
        return KeyStore(app.runtime.store.bridge)

    @app.get("/v1/admin/keys")
    @documented("API keys (never their secrets)", "Keys", Answer(200, res.Keys, "the keys"),
                params=(reg.query("all", {"type": "boolean"}, "revoked and expired ones too",
                                  False),),
                problems=("INVALID_FLAG",))
    async def list_keys() -> Response:
        every = validate.flag(request.args.get("all"), "all")
        now = datetime.now(UTC)
        records = await keys().listing(every)
        return json_response({"keys": [r.as_dict(now) for r in records]})

    @app.post("/v1/admin/keys")
    @documented("Create an API key", "Keys",
                Answer(201, res.NewKey, "the key; `key` is shown this once",
                       ("Location", "Cache-Control")),
                body=KeyRequest, body_required=False, problems=("INVALID_KEY", "KEY_NAME_IN_USE"),
                body_example={"name": "web-shop", "channels": ["web"], "calls": ["purchase"]})
    async def create_key() -> Response:
        body = body_as(KeyRequest, await _body())
        expires = (datetime.now(UTC) + timedelta(seconds=body.expires_in)
                   if body.expires_in is not None else None)
        try:
            new, raw = key_request(
                body.name, role=body.role, channels=body.channels, calls=body.calls,
                msisdn_prefixes=body.msisdn_prefixes, read=body.read or "own",
                expires_at=expires)
        except KeyRequestError as exc:
            raise ApiProblem(422, "INVALID_KEY", str(exc), field=exc.field) from None
        created = await keys().create(new, acting(settings))
        if created is None:
            raise ApiProblem(409, "KEY_NAME_IN_USE", f"an active key is already named "
                             f"{new.name!r}: rotate it or revoke it first", field="name")
        return json_response({"key": raw, **created.as_dict(datetime.now(UTC))}, 201,
                             {**NO_STORE, "Location": f"/v1/admin/keys/{created.id}"})

    @app.post("/v1/admin/keys/<key_id>/revoke")
    @documented("Revoke an API key, in every worker at once", "Keys",
                Answer(200, res.KeyRecord, "revoked"), params=(KEY_ID,),
                problems=("INVALID_KEY_ID", "KEY_NOT_FOUND", "KEY_REVOKED"))
    async def revoke_key(key_id: str) -> Response:
        outcome = await keys().revoke(_key_id(key_id), acting(settings))
        if outcome is None:
            raise ApiProblem(404, "KEY_NOT_FOUND", f"no key {key_id}", field="id")
        record, changed = outcome
        if not changed:
            raise ApiProblem(409, "KEY_REVOKED", f"key {key_id} was already revoked",
                             field="id")
        return json_response(record.as_dict(datetime.now(UTC)))

    @app.post("/v1/admin/keys/<key_id>/rotate")
    @documented("Rotate an API key: a new one; the old one valid for `grace` seconds", "Keys",
                Answer(201, res.RotatedKey, "the new key; `key` is shown this once",
                       ("Location", "Cache-Control")),
                body=RotateRequest, body_required=False, params=(KEY_ID,),
                problems=("INVALID_KEY_ID", "KEY_NOT_FOUND", "KEY_NOT_ACTIVE"))
    async def rotate_key(key_id: str) -> Response:
        grace = body_as(RotateRequest, await _body()).grace
        raws: list[str] = []

        def make(old: KeyRecord) -> NewKey:
            new, raw = replacement(old)
            raws.append(raw)
            return new

        outcome = await keys().rotate(_key_id(key_id), make, timedelta(seconds=grace),
                                      acting(settings))
        if outcome is None:
            raise ApiProblem(404, "KEY_NOT_FOUND", f"no key {key_id}", field="id")
        now = datetime.now(UTC)
        if isinstance(outcome, KeyRecord):
            raise ApiProblem(409, "KEY_NOT_ACTIVE", f"key {key_id} is {outcome.status(now)}: "
                             "only an active key can be rotated", field="id")
        old, new = outcome
        return json_response({"key": raws[-1], **new.as_dict(now),
                              "replaces": old.as_dict(now)}, 201,
                             {**NO_STORE, "Location": f"/v1/admin/keys/{new.id}"})
