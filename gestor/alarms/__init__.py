"""Alarms: raised and persisted by the hub, fanned out to websockets and sinks (webhooks), and
the database's own alarms announced by one worker while the database is away.

* `_hub`: `AlarmHub`, persisted first, then fanned out (DESIGN D8), resolved when settled.
* `_database`: `database_down` / `database_recovered`, announced before they can be stored.
* `_webhooks`: `Webhooks`, the HTTP POST sink.
"""

from ._database import AnnouncerLock, raise_database_alarms
from ._hub import AlarmHub
from ._webhooks import Webhooks, open_webhooks

__all__ = ["AlarmHub", "AnnouncerLock", "Webhooks", "open_webhooks", "raise_database_alarms"]
