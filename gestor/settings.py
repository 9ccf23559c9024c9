"""Settings: `config/gestor.toml` (or `GESTOR_CONFIG_DIR`), overridden by environment variables
and command-line options. One frozen record; nothing else reads the environment."""

from __future__ import annotations

import os
import secrets
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import platformdirs

from gestor.ratelimits import DEFAULT_LIMITS, KINDS, SCOPES, Limit, LimitSettings

if TYPE_CHECKING:
    from gestor.notify import NotificationSettings

PACKAGE_CONFIG = Path(__file__).resolve().parent.parent / "config"


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names it, `where` says where it was given
    (a file and line, an environment variable, an option), and `str()` is both."""

    def __init__(self, message: str, where: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.where = where

    def __str__(self) -> str:
        text = f"{self.message} ({self.where})" if self.where else self.message
        return " ".join(text.split())  # always one line


def default_config_dir() -> Path:
    env = os.environ.get("GESTOR_CONFIG_DIR")
    if env:
        return Path(env)
    local = Path.cwd() / "config"
    if (local / "gestor.toml").is_file():
        return local
    return PACKAGE_CONFIG


def parse_bind(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise SettingsError(f"bind must be HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


@attrs.frozen
class Settings:
    config_dir: Path
    bind: str = "127.0.0.1:8080"
    workers: int = 1
    max_request_bytes: int = 16384
    shutdown_grace: float = 10.0
    #: Seconds an idle keep-alive client connection (or one that has not sent a whole request
    #: head) stays open; also how long a client may leave a response unread before it is dropped.
    keep_alive_timeout: float = 20.0
    #: Client connections one worker keeps open; 0: as many as its descriptor limit allows after
    #: a reserve for the database pool and the platform calls (`gestor.serving`).
    max_connections: int = 0
    #: TLS: the server's certificate (chain) and private key, PEM files; both or neither. With
    #: them every worker serves HTTPS and WSS on `bind` (`gestor.serving`).
    certfile: Path | None = None
    keyfile: Path | None = None
    database_url: str = ""
    pool_size: int = 10
    data_dir: Path = attrs.field(
        factory=lambda: Path(platformdirs.user_data_dir("gestor", appauthor=False))
    )
    timezone: str = "America/Argentina/Buenos_Aires"
    max_wait: float = 30.0
    profile_cache_ttl: float = 5.0
    max_in_flight: int = 20000
    max_accepting: int = 256
    accept_timeout: float = 3.0
    mailbox_size: int = 32
    idle_timeout: float = 15.0
    send_timeout: float = 0.5
    recovery_interval: float = 10.0
    stale_after: float = 30.0
    stuck_after: float = 600.0
    #: `[reports]`: the longest period a report may cover (days), and how often each worker
    #: folds the movements' report facts into the hourly rollups (seconds).
    report_max_days: int = 92
    report_fold_interval: float = 2.0
    platforms_url: str = ""
    admin_key: str = attrs.field(default="", repr=False)
    #: Channel API keys by client name (`GESTOR_API_KEYS="ussd-gw=KEY,app=KEY"`). When any is
    #: set, the channel calls need one, and it names the client (idempotency scope).
    api_keys: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    webhooks: tuple[str, ...] = ()
    #: Seconds one write to an alarm-feed websocket may block (its client not reading) before
    #: the server disconnects it.
    alarm_send_timeout: float = 5.0
    platforms: Mapping[str, Any] = attrs.field(factory=dict)
    simulator: Mapping[str, Any] = attrs.field(factory=dict)
    #: `[limits]`: rate limits per calling key and per msisdn (gestor.ratelimits).
    limits: LimitSettings = attrs.field(factory=LimitSettings)
    #: `[logging] format` (GESTOR_LOG_FORMAT, `gestor serve --log-format`): "json", "text", or
    #: "" for json unless stderr is a terminal (gestor/logs.py).
    log_format: str = ""
    #: `[logging] access_log`: a line per request on the `gestor.access` logger.
    access_log: bool = True
    #: Where the workers of one `gestor serve` share their metrics (GESTOR_METRICS_DIR, set by
    #: `gestor serve` for its workers; None: this process's own only).
    metrics_dir: Path | None = None
    #: `[ledger] max_period_days`: the longest period a ledger query (trial balance, entries)
    #: may ask for.
    ledger_max_period_days: int = 366
    #: `[notifications]`: e-mail and SMS routes, the SMTP server (its password read from the
    #: environment or a file, never logged), the SMS gateway and templates (gestor.notify).
    notifications: NotificationSettings = attrs.field(
        factory=lambda: _notification_defaults(), repr=False)

    @property
    def catalogue_path(self) -> Path:
        return self.config_dir / "bonos.toml"

    @property
    def rules_path(self) -> Path:
        return self.config_dir / "rules.toml"

    @property
    def host_port(self) -> tuple[str, int]:
        return parse_bind(self.bind)

    @property
    def scheme(self) -> str:
        """`https` when TLS is configured, else `http` (a websocket's: `wss`, `ws`)."""
        return "https" if self.certfile is not None else "http"

    def environ(self) -> dict[str, str]:
        """The environment that makes a worker process load these same settings."""
        env = {
            "GESTOR_CONFIG_DIR": str(self.config_dir),
            "GESTOR_BIND": self.bind,
            "GESTOR_DATA_DIR": str(self.data_dir),
        }
        if self.database_url:
            env["GESTOR_DATABASE_URL"] = self.database_url
        if self.platforms_url:
            env["GESTOR_PLATFORMS_URL"] = self.platforms_url
        if self.certfile is not None and self.keyfile is not None:
            env["GESTOR_CERTFILE"] = str(self.certfile.absolute())
            env["GESTOR_KEYFILE"] = str(self.keyfile.absolute())
        if self.admin_key:
            env["GESTOR_ADMIN_KEY"] = self.admin_key
        if self.api_keys:
            env["GESTOR_API_KEYS"] = ",".join(f"{n}={k}" for n, k in self.api_keys.items())
        if self.log_format:
            env["GESTOR_LOG_FORMAT"] = self.log_format
        if self.metrics_dir is not None:
            env["GESTOR_METRICS_DIR"] = str(self.metrics_dir)
        return env

    def with_admin_key(self) -> Settings:
        """These settings with an admin key: `GESTOR_ADMIN_KEY` if it was given, else the one
        kept in `<data dir>/admin.key` (created, readable by the owner only, on first use)."""
        if self.admin_key:
            return self
        path = self.data_dir / "admin.key"
        if not path.is_file():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32))
        return attrs.evolve(self, admin_key=path.read_text().strip())


@attrs.frozen
class _Range:
    """Allowed values of a numeric setting: from `minimum` (itself allowed if `inclusive`) up
    to `maximum` (allowed), if any."""

    minimum: float
    inclusive: bool = True
    maximum: float | None = None

    def refusal(self, value: Any) -> str | None:
        if value < self.minimum or (value == self.minimum and not self.inclusive):
            low = f"at least {self.minimum}" if self.inclusive else f"more than {self.minimum}"
            return low if self.maximum is None else f"{low} and at most {self.maximum}"
        if self.maximum is not None and value > self.maximum:
            return f"at most {self.maximum}"
        return None


#: Range of a numeric setting, by (table, key). A key with none declared may be any value of
#: its type.
_BOUNDS: dict[tuple[str, str], _Range] = {
    ("server", "workers"): _Range(1),
    ("server", "max_request_bytes"): _Range(1),
    ("server", "shutdown_grace"): _Range(0),
    ("server", "keep_alive_timeout"): _Range(0, inclusive=False, maximum=3600),
    ("server", "max_connections"): _Range(0),
    ("database", "pool_size"): _Range(1),
    ("purchase", "max_wait"): _Range(0),
    ("purchase", "profile_cache_ttl"): _Range(0),
    ("purchase", "max_in_flight"): _Range(1),
    ("purchase", "max_accepting"): _Range(1),
    ("purchase", "accept_timeout"): _Range(0, inclusive=False, maximum=60),
    ("actors", "mailbox_size"): _Range(1),
    ("actors", "idle_timeout"): _Range(0, inclusive=False),
    ("actors", "send_timeout"): _Range(0, inclusive=False),
    ("recovery", "interval"): _Range(0, inclusive=False),
    ("recovery", "stale_after"): _Range(0, inclusive=False),
    ("recovery", "stuck_after"): _Range(0, inclusive=False),
    ("ledger", "max_period_days"): _Range(1, maximum=36600),
    ("reports", "max_days"): _Range(1, maximum=3660),
    ("reports", "fold_interval"): _Range(0, inclusive=False, maximum=3600),
    ("alarms", "send_timeout"): _Range(0, inclusive=False, maximum=3600),
    # [limits] (rate limits): a bucket's rate 0 turns it off.
    ("limits", "sync_interval"): _Range(0.01, maximum=10),
    **{(f"limits.{scope}.{kind}", "rate"): _Range(0, maximum=1_000_000)
       for scope in SCOPES for kind in KINDS},
    **{(f"limits.{scope}.{kind}", "burst"): _Range(1, maximum=1_000_000_000)
       for scope in SCOPES for kind in KINDS},
}


class _Table(dict[str, Any]):
    """A table of the settings file that remembers which keys were read, and where it is."""

    def __init__(self, data: Mapping[str, Any], path: tuple[str, ...], source: _Source) -> None:
        super().__init__(data)
        self.path = path
        self.source = source
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        value = super().get(key, default)
        if isinstance(value, dict) and not isinstance(value, _Table):
            value = _Table(value, (*self.path, key), self.source)
            self[key] = value
        return value

    def where(self, key: str | None = None) -> str:
        return self.source.where((*self.path, key) if key is not None else self.path)

    def name(self, key: str | None = None) -> str:
        return ".".join((*self.path, key) if key is not None else self.path)

    def read_whole(self) -> None:
        """Mark every key, in sub-tables too, as read (by an owner that checks them)."""
        self.read.update(self)
        for value in self.values():
            if isinstance(value, _Table):
                value.read_whole()

    def unread(self) -> list[tuple[_Table, str]]:
        """Keys never read, here and in the sub-tables that were read: (table, key)."""
        left: list[tuple[_Table, str]] = []
        for key, value in self.items():
            if key not in self.read:
                left.append((self, key))
            elif isinstance(value, _Table):
                left.extend(value.unread())
        return left


@attrs.frozen
class _Source:
    """The settings file's path and text, to name lines in messages."""

    path: Path
    text: str

    def where(self, path: tuple[str | int, ...]) -> str:
        from gestor.tomlines import line_of

        line = line_of(self.text, path)
        return f"{self.path}, line {line}" if line else str(self.path)


def _where(table: Mapping[str, Any], key: str) -> str:
    return table.where(key) if isinstance(table, _Table) else ""


def _get(table: Mapping[str, Any], key: str, kind: type, default: Any, where: str) -> Any:
    if not isinstance(table, Mapping):
        raise SettingsError(f"[{where}] must be a table, got {table!r}")
    value = table.get(key, default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool) \
            or (kind is float and value != value):  # TOML's nan passes every range check
        raise SettingsError(f"{where}.{key} must be {_KIND_NAMES.get(kind, kind.__name__)}, "
                            f"got {value!r}", _where(table, key))
    bounds = _BOUNDS.get((where, key))
    refusal = bounds.refusal(value) if bounds is not None and key in table else None
    if refusal is not None:
        raise SettingsError(f"{where}.{key} must be {refusal}, got {value!r}",
                            _where(table, key))
    return value


_KIND_NAMES = {int: "a whole number", float: "a number", str: "a string", bool: "true or false"}


def _read_file(path: Path) -> _Table:
    if not path.is_file():
        return _Table({}, (), _Source(path, ""))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"cannot read the settings file: {exc}", str(path)) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        from gestor.tomlines import syntax_location

        what, at = syntax_location(str(exc))
        raise SettingsError(f"not valid TOML: {what}", f"{path}, {at}" if at else str(path)
                            ) from exc
    source = _Source(path, text)
    for key, value in data.items():
        if not isinstance(value, dict):
            raise SettingsError(f"'{key}' must be a [{key}] table"
                                if key in _KNOWN_TABLES else f"unknown key '{key}'",
                                source.where((key,)))
    return _Table(data, (), source)


#: The tables of gestor.toml (other tables are refused as unknown).
_KNOWN_TABLES = frozenset({"server", "database", "embedded", "purchase", "actors", "recovery",
                           "alarms", "platforms", "simulator", "limits", "logging",
                           "notifications", "ledger", "reports"})


def _notification_defaults() -> NotificationSettings:
    from gestor.notify import NotificationSettings

    return NotificationSettings()


#: Where the SMTP password is read from when `password_env` does not name another variable.
SMTP_PASSWORD_ENV = "GESTOR_SMTP_PASSWORD"


def _read_notifications(table: Any, config_dir: Path, env: Mapping[str, str]
                        ) -> NotificationSettings:
    """`[notifications]`, checked whole (gestor.notify), with the SMTP password from
    `password_file` (relative to the settings file) or the variable `password_env` names."""
    from gestor.notify import ConfigError, NotificationSettings

    if not isinstance(table, _Table):
        return NotificationSettings()
    email = table.get("email", {})
    password = ""
    if isinstance(email, _Table):
        file = email.get("password_file", "")
        variable = email.get("password_env", SMTP_PASSWORD_ENV)
        if isinstance(file, str) and file:
            path = config_dir / Path(file).expanduser()
            try:
                password = path.read_text(encoding="utf-8").strip("\r\n")
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                raise SettingsError(f"notifications.email.password_file: cannot read {path}: "
                                    f"{reason}", email.where("password_file")) from None
        elif isinstance(variable, str) and variable:
            password = env.get(variable, "")
    try:
        settings = NotificationSettings.from_mapping(table, password=password)
    except ConfigError as exc:
        raise SettingsError(exc.message, table.source.where(exc.path)) from None
    table.read_whole()
    return settings


def _check_keys(table: _Table, known: frozenset[str]) -> None:
    for key in table:
        if key not in known:
            raise SettingsError(f"unknown key '{key}' in [{table.name()}]", table.where(key))


def _check_platforms(table: _Table) -> None:
    """The [platforms] table (and its [platforms.dwh|ocs|prov] sub-tables), as the platform
    clients will read it."""
    from gestor.platforms import EndpointSettings, PlatformSettings

    endpoint = frozenset(f.name for f in attrs.fields(EndpointSettings))
    platforms = frozenset(f.name for f in attrs.fields(PlatformSettings)
                          if isinstance(f.default, EndpointSettings))
    _check_keys(table, endpoint | platforms | {"base_url", "keepalive_expiry"})
    for name in platforms:
        sub = table.get(name)
        if isinstance(sub, _Table):
            _check_keys(sub, endpoint)
    try:
        PlatformSettings.from_mapping({**table, "url": table.get("url") or "http://check"})
    except ValueError as exc:
        raise SettingsError(str(exc), _locate_message(table, str(exc))) from None


def _check_simulator(table: _Table) -> None:
    from gestor.simulator import SimulatorConfig

    _check_keys(table, frozenset(f.name for f in attrs.fields(SimulatorConfig)))
    try:
        SimulatorConfig.from_mapping(table)
    except (ValueError, TypeError) as exc:
        raise SettingsError(str(exc), _locate_message(table, str(exc))) from None


def _locate_message(table: _Table, message: str) -> str:
    """Where the first key of `table` (or of a sub-table) quoted in `message` is."""
    import re

    sub = re.search(r"\[platforms\.(\w+)\]", message)
    path = (*table.path, sub.group(1)) if sub else table.path
    for name in re.findall(r"'(\w+)'", message):
        return table.source.where((*path, name))
    return table.source.where(path)


def _read_limits(table: Any) -> LimitSettings:
    """`[limits]`: `enabled`, `sync_interval`, and `[limits.key]` / `[limits.msisdn]`, each
    kind a `{rate = R, burst = B}` (a kind not given keeps its default)."""
    if not isinstance(table, Mapping):
        raise SettingsError("'limits' must be a [limits] table")
    if isinstance(table, _Table):
        _check_keys(table, frozenset({"enabled", "sync_interval", *SCOPES}))
    enabled = _get(table, "enabled", bool, True, "limits")
    sync_interval = _get(table, "sync_interval", float, 0.1, "limits")
    buckets: dict[str, dict[str, Limit]] = {}
    for scope in SCOPES:
        sub = table.get(scope, {})
        if not isinstance(sub, Mapping):
            raise SettingsError(f"limits.{scope} must be a [limits.{scope}] table",
                                _where(table, scope))
        if isinstance(sub, _Table):
            _check_keys(sub, frozenset(KINDS))
        buckets[scope] = {}
        for kind in KINDS:
            default = DEFAULT_LIMITS[scope][kind]
            spec = sub.get(kind)
            name = f"limits.{scope}.{kind}"
            if spec is None:
                buckets[scope][kind] = default
                continue
            if not isinstance(spec, Mapping):
                raise SettingsError(f"{name} must be a table {{rate = R, burst = B}}, "
                                    f"got {spec!r}", _where(sub, kind))
            if isinstance(spec, _Table):
                _check_keys(spec, frozenset({"rate", "burst"}))
            buckets[scope][kind] = Limit(_get(spec, "rate", float, default.rate, name),
                                         _get(spec, "burst", float, default.burst, name))
    return LimitSettings(enabled=enabled, sync_interval=sync_interval, buckets=buckets)


def _check_unknown(data: _Table) -> None:
    """Refuse any key of the file that no setting read, naming its table and line."""
    for table, key in data.unread():
        if not table.path:
            raise SettingsError(f"unknown table [{key}]" if isinstance(table[key], dict)
                                else f"unknown key '{key}'", table.where(key))
        raise SettingsError(f"unknown key '{key}' in [{table.name()}]", table.where(key))


def load_settings(
    config_dir: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Read `gestor.toml` from `config_dir`, then apply environment and explicit overrides
    (None values are ignored). Any key the file has that no setting reads is refused, with
    its table and line; so is a value of the wrong type or out of range."""
    env = os.environ if environ is None else environ
    config_dir = config_dir or default_config_dir()
    path = config_dir / "gestor.toml"
    data = _read_file(path)
    server = data.get("server", {})
    database = data.get("database", {})
    embedded = data.get("embedded", {})
    purchase = data.get("purchase", {})
    actors = data.get("actors", {})
    recovery = data.get("recovery", {})
    reports = data.get("reports", {})
    alarms = data.get("alarms", {})
    webhooks = alarms.get("webhooks", []) if isinstance(alarms, Mapping) else None
    if not isinstance(webhooks, list) or not all(
        isinstance(u, str) and u.startswith(("http://", "https://")) for u in webhooks
    ):
        raise SettingsError("alarms.webhooks must be a list of http(s) URLs",
                            _where(alarms, "webhooks"))
    platforms = dict(data.get("platforms", {}))
    logging_table = data.get("logging", {})
    ledger = data.get("ledger", {})
    log_format = _get(logging_table, "format", str, "auto", "logging")
    if log_format not in ("auto", "json", "text"):
        raise SettingsError(f"logging.format must be auto, json or text, got {log_format!r}",
                            _where(logging_table, "format"))
    values: dict[str, Any] = {
        "bind": _get(server, "bind", str, "127.0.0.1:8080", "server"),
        "workers": _get(server, "workers", int, 1, "server"),
        "max_request_bytes": _get(server, "max_request_bytes", int, 16384, "server"),
        "shutdown_grace": _get(server, "shutdown_grace", float, 10.0, "server"),
        "keep_alive_timeout": _get(server, "keep_alive_timeout", float, 20.0, "server"),
        "max_connections": _get(server, "max_connections", int, 0, "server"),
        "database_url": _get(database, "url", str, "", "database"),
        "pool_size": _get(database, "pool_size", int, 10, "database"),
        "timezone": _get(purchase, "timezone", str, "America/Argentina/Buenos_Aires", "purchase"),
        "max_wait": _get(purchase, "max_wait", float, 30.0, "purchase"),
        "profile_cache_ttl": _get(purchase, "profile_cache_ttl", float, 5.0, "purchase"),
        "max_in_flight": _get(purchase, "max_in_flight", int, 20000, "purchase"),
        "max_accepting": _get(purchase, "max_accepting", int, 256, "purchase"),
        "accept_timeout": _get(purchase, "accept_timeout", float, 3.0, "purchase"),
        "mailbox_size": _get(actors, "mailbox_size", int, 32, "actors"),
        "idle_timeout": _get(actors, "idle_timeout", float, 15.0, "actors"),
        "send_timeout": _get(actors, "send_timeout", float, 0.5, "actors"),
        "recovery_interval": _get(recovery, "interval", float, 10.0, "recovery"),
        "stale_after": _get(recovery, "stale_after", float, 30.0, "recovery"),
        "stuck_after": _get(recovery, "stuck_after", float, 600.0, "recovery"),
        "report_max_days": _get(reports, "max_days", int, 92, "reports"),
        "report_fold_interval": _get(reports, "fold_interval", float, 2.0, "reports"),
        "platforms_url": _get(platforms, "url", str, "", "platforms"),
        "webhooks": tuple(webhooks),
        "alarm_send_timeout": _get(alarms, "send_timeout", float, 5.0, "alarms"),
        "platforms": platforms,
        "simulator": dict(data.get("simulator", {})),
        "limits": _read_limits(data.get("limits", {})),
        "log_format": "" if log_format == "auto" else log_format,
        "access_log": _get(logging_table, "access_log", bool, True, "logging"),
        "ledger_max_period_days": _get(ledger, "max_period_days", int, 366, "ledger"),
    }
    data_dir = _get(embedded, "data_dir", str, "", "embedded")
    if data_dir:
        values["data_dir"] = Path(data_dir).expanduser()
    sources: dict[str, str] = {}
    for key in ("certfile", "keyfile"):
        # relative to the settings file's directory, as a user reading the file expects
        name = _get(server, key, str, "", "server")
        if name:
            values[key] = config_dir / Path(name).expanduser()
            sources[key] = _where(server, key)
    _check_timezone(values["timezone"], _where(purchase, "timezone"))
    values["notifications"] = _read_notifications(data.get("notifications"), config_dir, env)
    for name, check in (("platforms", _check_platforms), ("simulator", _check_simulator)):
        table = data.get(name)
        if isinstance(table, _Table):
            check(table)
            table.read_whole()  # read whole by its owner, checked just now
    _check_unknown(data)
    for var, key in (
        ("GESTOR_BIND", "bind"),
        ("GESTOR_DATABASE_URL", "database_url"),
        ("GESTOR_PLATFORMS_URL", "platforms_url"),
        ("GESTOR_ADMIN_KEY", "admin_key"),
    ):
        if env.get(var):
            values[key] = env[var]
            sources[key] = var
    if env.get("GESTOR_DATA_DIR"):
        values["data_dir"] = Path(env["GESTOR_DATA_DIR"]).expanduser()
    if env.get("GESTOR_METRICS_DIR"):
        values["metrics_dir"] = Path(env["GESTOR_METRICS_DIR"])
    if env.get("GESTOR_LOG_FORMAT"):
        if env["GESTOR_LOG_FORMAT"] not in ("auto", "json", "text"):
            raise SettingsError("the log format must be auto, json or text, got "
                                f"{env['GESTOR_LOG_FORMAT']!r}", "GESTOR_LOG_FORMAT")
        values["log_format"] = "" if env["GESTOR_LOG_FORMAT"] == "auto" else \
            env["GESTOR_LOG_FORMAT"]
    for var, key in (("GESTOR_CERTFILE", "certfile"), ("GESTOR_KEYFILE", "keyfile")):
        if env.get(var):
            values[key] = Path(env[var]).expanduser()
            sources[key] = var
    if env.get("GESTOR_API_KEYS"):
        keys: dict[str, str] = {}
        for entry in env["GESTOR_API_KEYS"].split(","):
            name, sep, key = entry.strip().partition("=")
            if not sep or not name or len(key) < 16:
                raise SettingsError("API keys must be name=key,... with keys of 16+ characters",
                                    "GESTOR_API_KEYS")
            keys[name] = key
        values["api_keys"] = keys
    if env.get("GESTOR_WORKERS"):
        if not env["GESTOR_WORKERS"].isdigit():
            raise SettingsError("workers must be a whole number, got "
                                f"{env['GESTOR_WORKERS']!r}", "GESTOR_WORKERS")
        values["workers"] = int(env["GESTOR_WORKERS"])
        sources["workers"] = "GESTOR_WORKERS"
    given = {k: v for k, v in overrides.items() if v is not None}
    values.update(given)
    sources.update({k: _OPTIONS.get(k, k) for k in given})
    settings = Settings(config_dir=config_dir, **values)
    try:
        parse_bind(settings.bind)
    except SettingsError as exc:
        raise SettingsError(exc.message, sources.get("bind", _where(server, "bind"))) from None
    if settings.workers < 1:
        raise SettingsError(f"workers must be at least 1, got {settings.workers}",
                            sources.get("workers", ""))
    _check_tls_pair(settings, sources)
    return settings


def _check_tls_pair(settings: Settings, sources: Mapping[str, str]) -> None:
    """TLS needs a certificate and its key: refuse one without the other, naming the one given."""
    given = [k for k in ("certfile", "keyfile") if getattr(settings, k) is not None]
    if len(given) == 1:
        (key,) = given
        other = "keyfile" if key == "certfile" else "certfile"
        raise SettingsError(f"TLS needs both server.certfile and server.keyfile, only {key} "
                            f"is set; give {other} with --{other}, GESTOR_{other.upper()} or "
                            f"[server] {other}", sources.get(key, ""))


#: The command-line option behind each override of `load_settings`, for messages.
_OPTIONS = {"bind": "--bind", "workers": "--workers", "platforms_url": "--platforms",
            "data_dir": "--data-dir", "certfile": "--certfile", "keyfile": "--keyfile"}


def _check_timezone(name: str, where: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError(f"purchase.timezone: unknown time zone {name!r}", where) from None
