"""The body of a request that submits a versioned source (a rule set, a catalogue): TOML text
(`Content-Type: application/toml`), or JSON `{"source", "description", "based_on"}`; a
catalogue may also come as a JSON document (`{"catalogue": {...}}`)."""

from __future__ import annotations

import json

from quart import request

from gestor.api import _validate as validate
from gestor.api._body import JSON
from gestor.api._problems import ApiProblem

MAX_SOURCE_BYTES = 256 * 1024


async def source_from_request(what: str, document: str | None = None
                              ) -> tuple[str, str, int | None]:
    """(source, description, based_on) of the request. `what` names the source in errors
    ("rule set"); with `document`, a JSON body may give it as an object under that key (stored
    as JSON text)."""
    raw = await request.get_data(cache=False, as_text=False)
    assert isinstance(raw, bytes)
    if len(raw) > MAX_SOURCE_BYTES:
        raise ApiProblem(413, "REQUEST_TOO_LARGE", f"a {what} is at most 256 KiB")
    if (request.mimetype or "") != JSON:  # application/toml (see _guards)
        try:
            return raw.decode("utf-8"), "", None
        except UnicodeDecodeError:
            raise ApiProblem(400, "INVALID_ENCODING", f"the {what} must be UTF-8 text",
                             field="body") from None
    body = validate.json_object(raw)
    source = body.get("source")
    if document is not None and source is None and document in body:
        if not isinstance(body[document], dict):
            raise ApiProblem(422, "INVALID_FIELD", f"{document} must be a JSON object",
                             field=document)
        source = json.dumps(body[document], ensure_ascii=False, indent=2)
    if not isinstance(source, str) or not source.strip():
        alternative = f" (or {document}, a JSON object)" if document else ""
        raise ApiProblem(422, "MISSING_FIELD", f"source (the {what}'s text){alternative} is "
                         "required", field="source")
    description = body.get("description", "")
    based_on = body.get("based_on")
    if not isinstance(description, str) or len(description) > 500:
        raise ApiProblem(422, "INVALID_DESCRIPTION", "description: text up to 500 chars",
                         field="description")
    if based_on is not None and (isinstance(based_on, bool) or not isinstance(based_on, int)
                                 or not 1 <= based_on <= validate.INTEGER_MAX):
        raise ApiProblem(422, "INVALID_BASED_ON", "based_on must be a version number",
                         field="based_on")
    return source, description, based_on
