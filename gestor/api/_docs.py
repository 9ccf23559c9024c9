"""`GET /openapi.json`, the API's OpenAPI 3.1 document (`_openapi`), and `GET /docs`, an
interactive reference on it: Swagger UI, vendored in gestor/api/swagger_ui (see its README),
served from the package, so it works offline; its Content-Security-Policy lets the page load
nothing but this server's own files.

Neither needs a key: the document says what the API takes, never anything stored.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import TYPE_CHECKING, Any

import msgspec
from quart import Response

from gestor.api._openapi import openapi_document
from gestor.api._problems import ApiProblem
from gestor.api._registry import Answer, Param, documented

if TYPE_CHECKING:
    from gestor.api._gestor_app import GestorApp

#: The files under /docs/, and their media types.
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "init.js": "text/javascript; charset=utf-8",
    "LICENSE": "text/plain; charset=utf-8",
    "NOTICE": "text/plain; charset=utf-8",
    "swagger-ui-bundle.js.LICENSE.txt": "text/plain; charset=utf-8",
}
HTML = "text/html; charset=utf-8"
#: Only this server's own files; Swagger UI sets inline styles, and shows images as data URIs.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; connect-src 'self'; font-src 'self' data:; base-uri 'none'; "
       "form-action 'none'; frame-ancestors 'none'")
_CACHED = {"Cache-Control": "public, max-age=3600"}
_ASSET = Param("asset", "path", {"type": "string", "enum": sorted(ASSETS)},
               "a file of the reference page", True, "init.js")


@functools.cache
def _file(name: str) -> bytes:
    return (resources.files("gestor.api") / "swagger_ui" / name).read_bytes()


def register(app: GestorApp) -> None:
    document: list[bytes] = []

    @app.get("/openapi.json")
    @documented("The OpenAPI 3.1 document of this API", "Reference",
                Answer(200, None, "this document", media=("application/json",)))
    async def openapi() -> Response:
        """Every call, its parameters, bodies, answers and problem codes, with examples."""
        if not document:  # built once, when every route is registered
            built: dict[str, Any] = openapi_document(app)
            document.append(msgspec.json.encode(built))
        return Response(document[0], content_type="application/json")

    @app.get("/docs")
    @documented("An interactive reference of this API (Swagger UI)", "Reference",
                Answer(200, None, "the page", media=(HTML,)))
    async def docs() -> Response:
        """A page that reads /openapi.json and lets you try each call; it loads nothing from
        anywhere but this server."""
        return Response(_file("index.html"), content_type=HTML,
                        headers={"Content-Security-Policy": CSP})

    @app.get("/docs/<asset>")
    @documented("A file of the reference page", "Reference",
                Answer(200, None, "the file", headers=("Cache-Control",),
                       media=tuple(dict.fromkeys(ASSETS.values()))),
                params=(_ASSET,), problems=("NOT_FOUND",))
    async def docs_asset(asset: str) -> Response:
        media = ASSETS.get(asset)
        if media is None:
            raise ApiProblem(404, "NOT_FOUND", f"no file {asset[:64]!r} in the reference page",
                             field="asset")
        return Response(_file(asset), content_type=media, headers=_CACHED)
