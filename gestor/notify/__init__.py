"""Notifications by several means (DESIGN D13): alarms e-mailed (or texted) to operators as
`[notifications]` routes them by kind and severity, and a text to the subscriber, in their
language, when a movement is refunded or is being settled after an inconsistency. (The alarm
feed's websocket and webhooks are `gestor.alarms`'.)

A durable outbox: the database's triggers write one delivery per (cause, channel, recipient)
in the transaction of the alarm or state change that causes it (migration 0014); each worker's
deliverer claims and sends them, retried with backoff up to a bound.

* `_config`: `NotificationSettings`, `[notifications]` read and checked.
* `_messages`: what each message says (pure).
* `_email`: `SmtpSender`, smtplib in a thread.
* `_deliverer`: `Deliverer`, the claim / send / record loop.
* `_notifier`: `open_notifier`, all of it for one worker.
"""

from ._config import ConfigError, NotificationSettings
from ._deliverer import Deliverer
from ._notifier import open_notifier

__all__ = ["ConfigError", "Deliverer", "NotificationSettings", "open_notifier"]
