"""One worker's part of a shared token bucket: the arithmetic, with the time passed in.

A bucket of `rate` per second and `burst` tokens is shared by every worker (and node) on one
database. Its truth is a level kept in PostgreSQL (it may go below zero: tokens admitted beyond
it are owed and repaid by the refill); each worker holds a local bucket that is its *share* of
it: after each exchange, `share * level` tokens, refilled at `share * rate`, at most
`max(1, share * burst)`. A worker's share is its part of the bucket's recent demand (requests
asked, admitted or not; an exponential average over `DEMAND_SECONDS`), so the shares add up to
about 1 and N workers together admit about `rate`, whichever worker gets more of the traffic.

A worker that has not exchanged a bucket yet (a new client, a mobile it has not seen lately)
takes it as full and wholly its own: the first requests of a mobile are never refused for lack
of news from the other workers. What that lets through beyond the bucket is charged to the
level at the next exchange, and repaid before anyone is admitted again.
"""

from __future__ import annotations

import math

import attrs

#: Seconds over which demand is averaged to share a bucket among the workers that use it.
DEMAND_SECONDS = 1.0
#: The smallest share a worker that asks for a bucket gets (so it can always tell a client
#: when to come back).
MIN_SHARE = 0.001


@attrs.define(slots=True)
class Bucket:
    """This worker's part of one shared bucket. `now` is the worker's monotonic clock (trio's)."""

    rate: float
    burst: float
    tokens: float
    at: float
    share: float = 1.0
    #: Admitted and asked since the last report to the database (and those of a report on its
    #: way, while it is).
    used: int = 0
    asked: int = 0
    sent_used: int = 0
    sent_asked: int = 0
    #: This worker's demand, averaged (see `DEMAND_SECONDS`), as of `demand_at`.
    demand: float = 0.0
    demand_at: float = 0.0
    #: When the shared level is full again, as far as this worker knows (it may be dropped from
    #: memory then: a bucket it does not hold is taken as full).
    full_at: float = 0.0
    last_asked: float = 0.0

    @classmethod
    def fresh(cls, rate: float, burst: float, now: float) -> Bucket:
        return cls(rate=rate, burst=burst, tokens=burst, at=now, demand_at=now, full_at=now,
                   last_asked=now)

    @property
    def cap(self) -> float:
        return max(1.0, self.burst * self.share)

    def refill(self, now: float) -> float:
        """The local tokens at `now` (refilled at this worker's share of the rate)."""
        if now > self.at:
            if self.tokens < self.cap:
                self.tokens = min(self.cap, self.tokens + self.rate * self.share * (now - self.at))
            self.at = now
        return self.tokens

    def ask(self, now: float) -> bool:
        """Count a request for this bucket; whether a token is there for it (not taken)."""
        self.asked += 1
        self.last_asked = now
        return self.refill(now) >= 1.0

    def take(self) -> None:
        self.tokens -= 1.0
        self.used += 1

    def retry_after(self, now: float) -> float:
        """Seconds until the shared bucket has a token again, as this worker sees it: its
        estimate of the shared level is its tokens over its share."""
        level = self.refill(now) / self.share
        return max(0.0, (1.0 - level) / self.rate)

    # -- the exchange with the other workers ----------------------------------------------------
    def report(self) -> tuple[int, int]:
        """What to add to the shared bucket (admitted, asked) since the last report; kept as
        `sent_*` until `settled` or `unsent`."""
        self.sent_used, self.sent_asked = self.used, self.asked
        self.used = self.asked = 0
        return self.sent_used, self.sent_asked

    def unsent(self) -> None:
        """The report did not reach the database: it goes with the next one."""
        self.used += self.sent_used
        self.asked += self.sent_asked
        self.sent_used = self.sent_asked = 0

    def settled(self, level: float, demand: float, now: float) -> None:
        """The database took the report: `level` is the shared level with every worker's
        reports so far (this one's included), `demand` every worker's averaged demand. The
        local tokens become this worker's share of the level, less what it admitted while
        the report was on its way (not in `level` yet, and already taken locally)."""
        decay = math.exp(-max(0.0, now - self.demand_at) / DEMAND_SECONDS)
        self.demand = self.demand * decay + self.sent_asked
        self.demand_at = now
        share = self.demand / demand if demand > 0 else 1.0
        self.share = min(1.0, max(MIN_SHARE, share))
        self.tokens = min(self.cap, self.share * level) - self.used
        self.at = now
        self.full_at = now + max(0.0, self.burst - level) / self.rate
        self.sent_used = self.sent_asked = 0

    def idle(self, now: float, after: float) -> bool:
        """Nothing to report, none asked for `after` seconds, and the shared level full again:
        forgetting it changes nothing (a bucket this worker does not hold is taken as full)."""
        return (self.used == 0 and self.asked == 0 and self.sent_asked == 0
                and now - self.last_asked >= after and now >= self.full_at)
