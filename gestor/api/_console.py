"""`GET /console`: the operator's console, a page served from the package (gestor/api/console:
its HTML, JS and CSS, and uPlot vendored for the charts; see the README there), so it works
offline; its Content-Security-Policy lets it load and call nothing but this server.

Loading the page needs no key: it holds nothing. Signing in keeps an operator key in the tab's
sessionStorage; every call the page makes carries it (`Authorization: Bearer`, and on the alarm
websocket as a subprotocol, gestor/api/_auth.py).
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import TYPE_CHECKING

from quart import Response

from gestor.api._problems import ApiProblem
from gestor.api._registry import Answer, Param, documented

if TYPE_CHECKING:
    from gestor.api._gestor_app import GestorApp

__all__ = ["ASSETS", "register"]

#: The files under /console/static/, and their media types.
ASSETS = {
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
    "uPlot.iife.min.js": "text/javascript; charset=utf-8",
    "uPlot.min.css": "text/css; charset=utf-8",
    "uPlot.LICENSE": "text/plain; charset=utf-8",
}
HTML = "text/html; charset=utf-8"
#: This server's own files and calls only (uPlot sizes its elements with inline styles).
CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
       "frame-ancestors 'none'")
_HEADERS = {"Content-Security-Policy": CSP, "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}
_ASSET = Param("asset", "path", {"type": "string", "enum": sorted(ASSETS)},
               "a file of the console", True, "console.js")


@functools.cache
def _file(name: str) -> bytes:
    return (resources.files("gestor.api") / "console" / name).read_bytes()


def register(app: GestorApp) -> None:
    @app.get("/console")
    @documented("The operator's console (a web page)", "Reference",
                Answer(200, None, "the page", media=(HTML,)))
    async def console() -> Response:
        """Live alarms, rates, reports, subscribers and rule and catalogue versions, for an
        operator key; it loads nothing from anywhere but this server."""
        return Response(_file("index.html"), content_type=HTML, headers=_HEADERS)

    @app.get("/console/static/<asset>")
    @documented("A file of the console", "Reference",
                Answer(200, None, "the file", headers=("Cache-Control",),
                       media=tuple(dict.fromkeys(ASSETS.values()))),
                params=(_ASSET,), problems=("NOT_FOUND",))
    async def console_asset(asset: str) -> Response:
        media = ASSETS.get(asset)
        if media is None:
            raise ApiProblem(404, "NOT_FOUND", f"no file {asset[:64]!r} in the console",
                             field="asset")
        return Response(_file(asset), content_type=media, headers=_HEADERS)
