"""`GET /v1/admin/mobiles/{msisdn}`: a subscriber through the profiler (role `viewer`).

The platforms are asked as a purchase asks them and the database read as a listing reads it
(gestor/purchase/_portrait.py); a platform that cannot be asked leaves its source null with a
note and the answer is still a 200. A valid msisdn nobody knows is a 200 with an empty history
(the sources say whether the line exists); a malformed one a 422 naming `msisdn`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart import Response, request

from gestor.api import _registry as reg
from gestor.api import _render as render
from gestor.api import _resources as res
from gestor.api import _validate as validate
from gestor.api._auth import require_admin
from gestor.api._problems import json_response
from gestor.api._registry import Answer, documented

if TYPE_CHECKING:
    from gestor.api._gestor_app import GestorApp
    from gestor.settings import Settings


def register(app: GestorApp, settings: Settings) -> None:
    @app.get("/v1/admin/mobiles/<raw_msisdn>")
    @documented("A subscriber through the profiler", "Subscribers",
                Answer(200, res.SubscriberView, "its profile as the rules see it now, "
                       "counters, restrictions, outstanding advance, movement in flight, "
                       "recent movements and peak hours"),
                params=(reg.MSISDN, reg.query(
                    "channel", {"enum": sorted(validate.CHANNELS)}, "the channel the profile "
                    "is evaluated for (default `api`)", "ussd")),
                problems=("INVALID_MSISDN", "INVALID_CHANNEL"))
    async def mobile(raw_msisdn: str) -> Response:
        require_admin(settings)
        msisdn = validate.msisdn(raw_msisdn)
        channel = validate.channel(request.args.get("channel"))
        rt = app.runtime
        found = await rt.purchases.portrait(msisdn, channel)
        return json_response(render.portrait(found, rt.catalogue))
