"""`[notifications]` of config/gestor.toml: where alarms and movement events are notified, and
how (SMTP server, SMS gateway, templates, retries). Read into frozen records, refusing a bad
value with a `ConfigError` naming the key (its `path`, for the settings file's line).

    [notifications]                  # retries of every delivery
    [notifications.email]            # the SMTP server and the operators' addresses
    [notifications.sms]              # the SMS gateway, the events that text a subscriber
    [notifications.sms.templates.refunded]      # es = "...", en = "..."
    [notifications.sms.templates.inconsistent]
    [[notifications.routes]]         # channel, to, kinds, min_severity: alarms by kind/severity
                                     # (none given: critical alarms to every operator)
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from gestor.model import Severity
from gestor.store import RouteRow

__all__ = [
    "ALARM_KINDS",
    "EVENTS",
    "LANGUAGES",
    "ConfigError",
    "EmailSettings",
    "NotificationSettings",
    "Route",
    "SmsSettings",
]

#: Every alarm kind Gestor raises (a route naming another is refused: it would never match).
ALARM_KINDS = ("charge_unknown", "provision_unknown", "refund_failed", "stuck", "platform_down",
               "platform_recovered", "resolved", "database_down", "database_recovered")
#: Movement states that may text the subscriber: its money was returned, or is being returned
#: after an inconsistency (charged, not provisioned, refund failed: the recoverer settles it).
EVENTS = ("refunded", "inconsistent")
LANGUAGES = ("es", "en")
SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}
#: What an SMS template may name: `{bono}` (its name), `{amount}` (major units, 2 decimals),
#: `{currency}`, `{reference}` (the transaction id's first 8 characters), `{msisdn}`, `{kind}`.
PLACEHOLDERS = frozenset({"bono", "amount", "currency", "reference", "msisdn", "kind"})
TLS_MODES = ("none", "starttls", "tls")

_EMAIL = re.compile(r"[^@\s<>,;]+@[^@\s<>,;]+\.?[^@\s<>,;]*")
_PHONE = re.compile(r"[0-9]{8,15}")

DEFAULT_TEMPLATES: Mapping[str, Mapping[str, str]] = {
    "refunded": {
        "es": "No pudimos completar tu compra de {bono}. Te devolvimos {amount} {currency}. "
              "Ref. {reference}",
        "en": "We could not complete your purchase of {bono}. {amount} {currency} was "
              "returned to your balance. Ref. {reference}",
    },
    "inconsistent": {
        "es": "Hubo un problema con tu compra de {bono}: te devolveremos {amount} {currency} "
              "a la brevedad. Ref. {reference}",
        "en": "There was a problem with your purchase of {bono}: {amount} {currency} will be "
              "returned to your balance shortly. Ref. {reference}",
    },
}


class ConfigError(ValueError):
    """A bad `[notifications]` value: `message` names it, `path` is where it is in the file
    (table and key names, with array indices)."""

    def __init__(self, message: str, path: tuple[str | int, ...]) -> None:
        super().__init__(message)
        self.message = message
        self.path = path


@attrs.frozen
class EmailSettings:
    operators: tuple[str, ...] = ()
    smtp_host: str = "localhost"
    smtp_port: int = 25
    sender: str = "gestor@localhost"
    tls: str = "none"
    username: str = ""
    password: str = attrs.field(default="", repr=False)
    timeout: float = 10.0


@attrs.frozen
class SmsSettings:
    #: The SMS gateway; "" for the platforms' URL (the simulator plays it).
    url: str = ""
    events: tuple[str, ...] = EVENTS
    default_language: str = "es"
    timeout: float = 5.0
    templates: Mapping[str, Mapping[str, str]] = DEFAULT_TEMPLATES


@attrs.frozen
class Route:
    """Alarms of `kinds` (empty: any) at `min_severity` or above go to `to` by `channel`."""

    channel: str
    to: tuple[str, ...]
    kinds: tuple[str, ...] = ()
    min_severity: Severity = Severity.WARNING
    language: str = "en"


@attrs.frozen
class NotificationSettings:
    max_attempts: int = 8
    retry_backoff: float = 5.0
    retry_backoff_max: float = 600.0
    attempt_timeout: float = 30.0
    poll_interval: float = 5.0
    email: EmailSettings = EmailSettings()
    sms: SmsSettings = SmsSettings()
    routes: tuple[Route, ...] = ()

    def retry_delay(self, attempts: int) -> float:
        """Seconds before the attempt after `attempts` failed ones (doubled each time)."""
        delay: float = self.retry_backoff * 2.0 ** max(attempts - 1, 0)
        return min(delay, self.retry_backoff_max)

    def route_rows(self) -> list[RouteRow]:
        """What the database's triggers route by (`Store.replace_notification_routes`)."""
        rows = [RouteRow("alarm", r.channel, to, r.language, r.kinds,
                         SEVERITY_RANK[r.min_severity])
                for r in self.routes for to in r.to]
        if self.sms.events:
            rows.append(RouteRow("movement", "sms", "", None, self.sms.events, 0))
        return rows

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, password: str = ""
                     ) -> NotificationSettings:
        """From the `[notifications]` table; `password` is the SMTP password (read by the
        settings from the environment or a file, never from gestor.toml)."""
        top = _Reader(data, ("notifications",))
        max_attempts = top.integer("max_attempts", 8, 1, 1000)
        values = {
            "retry_backoff": top.number("retry_backoff", 5.0, 0.001, 86400),
            "retry_backoff_max": top.number("retry_backoff_max", 600.0, 0.001, 86400),
            "attempt_timeout": top.number("attempt_timeout", 30.0, 0.1, 3600),
            "poll_interval": top.number("poll_interval", 5.0, 0.01, 3600),
        }
        if values["retry_backoff_max"] < values["retry_backoff"]:
            raise ConfigError("notifications.retry_backoff_max must be at least retry_backoff",
                              ("notifications", "retry_backoff_max"))
        email = _email(top.table("email"), password)
        sms = _sms(top.table("sms"))
        if "routes" not in top.data:  # the default: critical alarms to every operator
            default = (Route("email", email.operators, (), Severity.CRITICAL),)
            top.check_known({"max_attempts", "retry_backoff", "retry_backoff_max",
                             "attempt_timeout", "poll_interval", "email", "sms"})
            return cls(max_attempts=max_attempts, **values, email=email, sms=sms,
                       routes=default)
        routes = top.get("routes", [])
        if not isinstance(routes, list):
            raise ConfigError("notifications.routes must be an array of tables "
                              "([[notifications.routes]])", ("notifications", "routes"))
        parsed = tuple(_route(_Reader(r, ("notifications", "routes", i)), email)
                       for i, r in enumerate(routes))
        top.check_known({"max_attempts", "retry_backoff", "retry_backoff_max",
                         "attempt_timeout", "poll_interval", "email", "sms", "routes"})
        return cls(max_attempts=max_attempts, **values, email=email, sms=sms, routes=parsed)


def _email(table: _Reader, password: str) -> EmailSettings:
    operators = table.strings("operators", ())
    for i, address in enumerate(operators):
        if not _EMAIL.fullmatch(address):
            raise ConfigError(f"notifications.email.operators[{i}] is not an e-mail address: "
                              f"{address!r}", (*table.path, "operators"))
    sender = table.string("from", "gestor@localhost")
    if not _EMAIL.fullmatch(sender):
        raise ConfigError(f"notifications.email.from is not an e-mail address: {sender!r}",
                          (*table.path, "from"))
    tls = table.choice("tls", "none", TLS_MODES)
    # password_env / password_file are read by gestor.settings (the environment, a file)
    table.string("password_env", "")
    table.string("password_file", "")
    settings = EmailSettings(
        operators=operators,
        smtp_host=table.string("smtp_host", "localhost", empty=False),
        smtp_port=table.integer("smtp_port", 25, 1, 65535),
        sender=sender, tls=tls,
        username=table.string("username", ""), password=password,
        timeout=table.number("timeout", 10.0, 0.1, 600),
    )
    table.check_known({"operators", "smtp_host", "smtp_port", "from", "tls", "username",
                       "password_env", "password_file", "timeout"})
    return settings


def _sms(table: _Reader) -> SmsSettings:
    url = table.string("url", "")
    if url and not url.startswith(("http://", "https://")):
        raise ConfigError(f"notifications.sms.url must be an http(s) URL, got {url!r}",
                          (*table.path, "url"))
    events = table.strings("events", EVENTS)
    for event in events:
        if event not in EVENTS:
            raise ConfigError(f"notifications.sms.events: {event!r} is not one of "
                              f"{', '.join(EVENTS)}", (*table.path, "events"))
    templates_table = table.table("templates")
    templates: dict[str, dict[str, str]] = {}
    for event in EVENTS:
        texts = templates_table.table(event)
        templates[event] = {}
        for language in LANGUAGES:
            text = texts.string(language, DEFAULT_TEMPLATES[event][language], empty=False)
            _check_template(text, (*texts.path, language))
            templates[event][language] = text
        texts.check_known(set(LANGUAGES))
    templates_table.check_known(set(EVENTS))
    settings = SmsSettings(
        url=url.rstrip("/"), events=tuple(dict.fromkeys(events)),
        default_language=table.choice("default_language", "es", LANGUAGES),
        timeout=table.number("timeout", 5.0, 0.1, 600), templates=templates,
    )
    table.check_known({"url", "events", "default_language", "timeout", "templates"})
    return settings


def _check_template(text: str, path: tuple[str | int, ...]) -> None:
    name = ".".join(str(p) for p in path)
    try:
        fields = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ConfigError(f"{name}: not a valid template ({exc}); write {{{{ and }}}} for "
                          "literal braces", path) from None
    for _literal, field, spec, conversion in fields:
        if field is None:
            continue
        if field not in PLACEHOLDERS or spec or conversion:
            raise ConfigError(f"{name}: unknown placeholder {{{field}}}; use "
                              f"{', '.join('{' + p + '}' for p in sorted(PLACEHOLDERS))}", path)


def _route(table: _Reader, email: EmailSettings) -> Route:
    name = f"notifications.routes[{table.path[-1]}]"
    channel = table.choice("channel", None, ("email", "sms"))
    default_to = email.operators if channel == "email" else None
    to = table.strings("to", default_to)
    pattern = _EMAIL if channel == "email" else _PHONE
    for address in to:
        if not pattern.fullmatch(address):
            what = "an e-mail address" if channel == "email" else "a phone number (8-15 digits)"
            raise ConfigError(f"{name}.to: {address!r} is not {what}", (*table.path, "to"))
    kinds = table.strings("kinds", ())
    for kind in kinds:
        if kind not in ALARM_KINDS:
            raise ConfigError(f"{name}.kinds: unknown alarm kind {kind!r}; the kinds are "
                              f"{', '.join(ALARM_KINDS)}", (*table.path, "kinds"))
    severity = table.choice("min_severity", "warning", tuple(s.value for s in Severity))
    language = table.choice("language", "en", LANGUAGES)
    table.check_known({"channel", "to", "kinds", "min_severity", "language"})
    return Route(channel, tuple(dict.fromkeys(to)), tuple(sorted(set(kinds))),
                 Severity(severity), language)


@attrs.define
class _Reader:
    """Typed reads of one table, each refusal naming its key."""

    data: Any
    path: tuple[str | int, ...]

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.data, Mapping):
            raise ConfigError(f"{self._name()} must be a table", self.path)

    def _name(self, key: str | None = None) -> str:
        parts: list[str] = []
        for p in self.path if key is None else (*self.path, key):
            if isinstance(p, int):
                parts[-1] += f"[{p}]"
            else:
                parts.append(p)
        return ".".join(parts)

    def get(self, key: str, default: Any) -> Any:
        return self.data.get(key, default)

    def table(self, key: str) -> _Reader:
        return _Reader(self.data.get(key, {}), (*self.path, key))

    def _fail(self, key: str, what: str, value: Any) -> ConfigError:
        return ConfigError(f"{self._name(key)} must be {what}, got {value!r}", (*self.path, key))

    def string(self, key: str, default: str, *, empty: bool = True) -> str:
        value = self.data.get(key, default)
        if not isinstance(value, str) or (not empty and not value.strip()):
            raise self._fail(key, "a string" if empty else "a non-empty string", value)
        return value

    def strings(self, key: str, default: Sequence[str] | None) -> tuple[str, ...]:
        if key not in self.data and default is None:
            raise ConfigError(f"{self._name(key)} is required", self.path)
        value = self.data.get(key, default)
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise self._fail(key, "a list of strings", value)
        return tuple(value)

    def choice(self, key: str, default: str | None, choices: Sequence[str]) -> str:
        if key not in self.data and default is None:
            raise ConfigError(f"{self._name(key)} is required (one of {', '.join(choices)})",
                              self.path)
        value = self.data.get(key, default)
        if value not in choices:
            raise self._fail(key, f"one of {', '.join(choices)}", value)
        return str(value)

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self._fail(key, f"a whole number from {low} to {high}", value)
        return value

    def number(self, key: str, default: float, low: float, high: float) -> float:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not low <= value <= high:  # also refuses nan
            raise self._fail(key, f"a number from {low:g} to {high:g}", value)
        return float(value)

    def check_known(self, known: set[str]) -> None:
        for key in self.data:
            if key not in known:
                raise ConfigError(f"unknown key '{key}' in [{self._name()}]", (*self.path, key))
