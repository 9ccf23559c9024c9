"""File descriptors of a worker: raise the soft limit, and how many client connections fit."""

from __future__ import annotations

import logging
import resource

from gestor.platforms import PlatformSettings
from gestor.settings import Settings

logger = logging.getLogger("gestor")

#: Descriptors a worker uses whatever its settings: stdio, the trio loop (epoll, wake-up
#: socketpair), the listening socket, log files, worker threads, the webhooks' connections (at
#: most 100 attempts in flight), the embedded database's and simulator's pipes.
BASE_RESERVE = 160
#: Database connections beyond the pool: the store's batch lanes and LISTEN connections.
DATABASE_EXTRA = 16
#: Fewest client connections a worker accepts, whatever the limit says.
MIN_CAP = 16

_NR_OPEN_FALLBACK = 1 << 20


def raise_descriptor_limit() -> int:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit; returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if hard == resource.RLIM_INFINITY:
        try:
            with open("/proc/sys/fs/nr_open", encoding="ascii") as f:
                target = int(f.read())
        except (OSError, ValueError):
            target = _NR_OPEN_FALLBACK
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (OSError, ValueError) as exc:
            logger.warning("could not raise the open-files limit from %d to %d: %s",
                           soft, target, exc)
    return _NR_OPEN_FALLBACK if soft == resource.RLIM_INFINITY else soft


def descriptor_reserve(settings: Settings) -> int:
    """Descriptors a worker keeps for itself beyond its client connections: the database pool and
    lanes, every platform call in flight plus as many idle keep-alive ones, and `BASE_RESERVE`."""
    given = {k: v for k, v in settings.platforms.items() if k not in ("url", "base_url")}
    platforms = PlatformSettings.from_mapping({**given, "url": "http://platforms.invalid"})
    calls = sum(platforms.endpoint(name).max_concurrency for name in ("dwh", "ocs", "prov"))
    return BASE_RESERVE + settings.pool_size + DATABASE_EXTRA + 2 * calls


def connection_cap(settings: Settings, limit: int) -> int:
    """Client connections a worker with descriptor limit `limit` keeps open at most:
    `server.max_connections` if set and it fits, else the limit less `descriptor_reserve`."""
    room = max(limit - descriptor_reserve(settings), MIN_CAP)
    if settings.max_connections == 0:
        if room < 1024:
            logger.warning("the open-files limit (%d) leaves room for %d client connections "
                           "per worker; raise it (ulimit -n) for more", limit, room)
        return room
    if settings.max_connections > room:
        logger.warning("server.max_connections = %d does not fit the open-files limit (%d); "
                       "using %d", settings.max_connections, limit, room)
        return room
    return settings.max_connections
