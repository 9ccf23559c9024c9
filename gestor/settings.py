"""Settings: `config/gestor.toml` (or `GESTOR_CONFIG_DIR`), overridden by environment variables
and command-line options. One frozen record; nothing else reads the environment."""

from __future__ import annotations

import os
import secrets
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import platformdirs

PACKAGE_CONFIG = Path(__file__).resolve().parent.parent / "config"


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names it."""


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
    mailbox_size: int = 32
    idle_timeout: float = 15.0
    send_timeout: float = 0.5
    recovery_interval: float = 10.0
    stale_after: float = 30.0
    stuck_after: float = 600.0
    platforms_url: str = ""
    admin_key: str = attrs.field(default="", repr=False)
    #: Channel API keys by client name (`GESTOR_API_KEYS="ussd-gw=KEY,app=KEY"`). When any is
    #: set, the channel calls need one, and it names the client (idempotency scope).
    api_keys: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    webhooks: tuple[str, ...] = ()
    platforms: Mapping[str, Any] = attrs.field(factory=dict)
    simulator: Mapping[str, Any] = attrs.field(factory=dict)

    @property
    def catalogue_path(self) -> Path:
        return self.config_dir / "bonos.toml"

    @property
    def rules_path(self) -> Path:
        return self.config_dir / "rules.toml"

    @property
    def host_port(self) -> tuple[str, int]:
        return parse_bind(self.bind)

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
        if self.admin_key:
            env["GESTOR_ADMIN_KEY"] = self.admin_key
        if self.api_keys:
            env["GESTOR_API_KEYS"] = ",".join(f"{n}={k}" for n, k in self.api_keys.items())
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


def _get(table: Mapping[str, Any], key: str, kind: type, default: Any, where: str) -> Any:
    value = table.get(key, default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise SettingsError(f"{where}.{key} must be {kind.__name__}, got {value!r}")
    return value


def load_settings(
    config_dir: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Read `gestor.toml` from `config_dir`, then apply environment and explicit overrides
    (None values are ignored)."""
    env = os.environ if environ is None else environ
    config_dir = config_dir or default_config_dir()
    path = config_dir / "gestor.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: {exc}") from exc
    server = data.get("server", {})
    database = data.get("database", {})
    embedded = data.get("embedded", {})
    purchase = data.get("purchase", {})
    actors = data.get("actors", {})
    recovery = data.get("recovery", {})
    webhooks = data.get("alarms", {}).get("webhooks", [])
    if not isinstance(webhooks, list) or not all(
        isinstance(u, str) and u.startswith(("http://", "https://")) for u in webhooks
    ):
        raise SettingsError("alarms.webhooks must be a list of http(s) URLs")
    platforms = dict(data.get("platforms", {}))
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
        "mailbox_size": _get(actors, "mailbox_size", int, 32, "actors"),
        "idle_timeout": _get(actors, "idle_timeout", float, 15.0, "actors"),
        "send_timeout": _get(actors, "send_timeout", float, 0.5, "actors"),
        "recovery_interval": _get(recovery, "interval", float, 10.0, "recovery"),
        "stale_after": _get(recovery, "stale_after", float, 30.0, "recovery"),
        "stuck_after": _get(recovery, "stuck_after", float, 600.0, "recovery"),
        "platforms_url": _get(platforms, "url", str, "", "platforms"),
        "webhooks": tuple(webhooks),
        "platforms": platforms,
        "simulator": dict(data.get("simulator", {})),
    }
    data_dir = _get(embedded, "data_dir", str, "", "embedded")
    if data_dir:
        values["data_dir"] = Path(data_dir).expanduser()
    for var, key in (
        ("GESTOR_BIND", "bind"),
        ("GESTOR_DATABASE_URL", "database_url"),
        ("GESTOR_PLATFORMS_URL", "platforms_url"),
        ("GESTOR_ADMIN_KEY", "admin_key"),
    ):
        if env.get(var):
            values[key] = env[var]
    if env.get("GESTOR_DATA_DIR"):
        values["data_dir"] = Path(env["GESTOR_DATA_DIR"]).expanduser()
    if env.get("GESTOR_API_KEYS"):
        keys: dict[str, str] = {}
        for entry in env["GESTOR_API_KEYS"].split(","):
            name, sep, key = entry.strip().partition("=")
            if not sep or not name or len(key) < 16:
                raise SettingsError("GESTOR_API_KEYS is name=key,... with keys of 16+ chars")
            keys[name] = key
        values["api_keys"] = keys
    if env.get("GESTOR_WORKERS"):
        if not env["GESTOR_WORKERS"].isdigit():
            raise SettingsError("GESTOR_WORKERS must be a whole number")
        values["workers"] = int(env["GESTOR_WORKERS"])
    values.update({k: v for k, v in overrides.items() if v is not None})
    settings = Settings(config_dir=config_dir, **values)
    parse_bind(settings.bind)
    if settings.workers < 1:
        raise SettingsError("server.workers must be at least 1")
    if not 0 < settings.keep_alive_timeout <= 3600:
        raise SettingsError("server.keep_alive_timeout must be > 0 and <= 3600 (seconds), got "
                            f"{settings.keep_alive_timeout!r}")
    if settings.max_connections < 0:
        raise SettingsError("server.max_connections must be >= 0 (0: from the descriptor "
                            f"limit), got {settings.max_connections!r}")
    return settings
