"""The body of a request that submits a versioned source (a rule set, a catalogue): the TOML
document itself (`Content-Type: application/toml`), or JSON decoded as its request Struct
(`RulesRequest`, `CatalogueRequest`: the fields and their refusals are the Struct's); a
catalogue may come as a JSON document (`{"catalogue": {...}}`), stored as JSON text."""

from __future__ import annotations

import json
from typing import TypeVar

from quart import request

from gestor.api import _validate as validate
from gestor.api._body import JSON
from gestor.api._decode import body_as
from gestor.api._problems import ApiProblem
from gestor.api._requests import CatalogueRequest, RulesRequest

MAX_SOURCE_BYTES = 256 * 1024

S = TypeVar("S", RulesRequest, CatalogueRequest)


async def submitted(model: type[S], what: str) -> S:
    """The request's body as `model`: a TOML body is its `source` (no description, no
    `based_on`). `what` names the source in errors ("rule set")."""
    raw = await request.get_data(cache=False, as_text=False)
    assert isinstance(raw, bytes)
    if len(raw) > MAX_SOURCE_BYTES:
        raise ApiProblem(413, "REQUEST_TOO_LARGE", f"a {what} is at most 256 KiB")
    if (request.mimetype or "") != JSON:  # application/toml (see _guards)
        try:
            return model(source=raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise ApiProblem(400, "INVALID_ENCODING", f"the {what} must be UTF-8 text",
                             field="body") from None
    return body_as(model, validate.json_object(raw))


def catalogue_source(body: CatalogueRequest) -> str:
    """The catalogue's text: `source`, or the `catalogue` document as JSON text."""
    if body.catalogue is None:
        if body.source is None:
            raise ApiProblem(422, "MISSING_FIELD", "source (the catalogue's text) or catalogue "
                             "(a JSON object) is required", field="source")
        return body.source
    if body.source is not None:
        raise ApiProblem(422, "INVALID_FIELD", "give the catalogue as source or as catalogue, "
                         "not both", field="catalogue")
    return json.dumps(body.catalogue, ensure_ascii=False, indent=2)
