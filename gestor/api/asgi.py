"""The ASGI app of a hypercorn worker process (`gestor serve --workers N`).

The parent process resolves the database and platforms (starting the embedded ones if needed)
and passes them down in the environment; every worker builds the same app from it.
"""

from __future__ import annotations

import os

from gestor.api._app import create_app
from gestor.logs import configure_logging
from gestor.settings import load_settings

configure_logging()
_settings = load_settings()
app = create_app(_settings, os.environ["GESTOR_DATABASE_URL"], os.environ["GESTOR_PLATFORMS_URL"])
