"""The load generator: one process (of `procs`), one trio loop, raw keep-alive HTTP/1.1.

Two disciplines:

* closed loop (`mode="closed"`): `connections` clients, each sends its next request as soon as
  the previous answer arrives. Latency is measured from the send.
* open loop (`mode="open"`): requests are *scheduled* at a fixed arrival rate whatever the
  server does; each one takes an idle keep-alive connection or opens a new one (up to
  `connections`, then it queues). Latency is measured from the scheduled time, so a server
  that stalls is charged for every request it delayed (no coordinated omission).

`movements` runs closed-loop clients of its own (`movements_client`): advance cycles on
well-known mobiles, with recharges at the simulator, and a mix of the other movements.

The process reports to the orchestrator over a `multiprocessing` connection: a `tick` per
second (what completed in that second, for the progress line and the time series) and a final
`done` (HDR histograms of the measurement window, counts, and the purchase answers for the
correctness checks).
"""

from __future__ import annotations

import contextlib
import itertools
import random
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import msgspec
import trio
from hdrh.histogram import HdrHistogram

from bench._http import ConnectionLost, HttpConnection

LOWEST_US = 1
#: open loop: an idle keep-alive connection older than this is closed rather than reused (Gestor's
#: shipped keep_alive_timeout is 20 s)
IDLE_MAX_S = 10.0
HIGHEST_US = 180_000_000  # 3 minutes
SIGFIGS = 3

_decode = msgspec.json.decode
CHANNELS = ("ussd", "app", "ivr", "web", "retail", "api")


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGFIGS)


@dataclass(frozen=True)
class LoadSpec:
    host: str
    port: int
    scenario: str               # purchase | mix | hot-mobile | slow-platforms | faults | echo
                                # | in-flight | many-mobiles | history | movements
    mode: str                   # closed | open
    connections: int            # closed: clients of this process; open: connection cap
    rate: float                 # open: arrivals per second of this process
    t0: float                   # wall-clock time (time.time()) at which the load starts
    duration: float
    warmup: float
    wait: float                 # Prefer: wait=N on purchases (0: no Prefer, answer is 202)
    proc_index: int = 0
    procs: int = 1
    run_id: str = "run"
    bono_id: str = "SMS_200_30D"
    hot_msisdns: tuple[str, ...] = ()
    msisdn_pool: int = 20_000
    msisdn_base: int = 20_000_000
    seed: int = 1
    drain: float = 15.0
    keep_answers: bool = True
    long_msisdn: str = ""       # history: process 0 buys on it every LONG_EVERY requests
    #                             (never twice at once), the other purchases on distinct msisdns
    sim_port: int = 0           # movements: the simulator (balances, recharges)
    advance_clients: int = 0    # movements: clients (of all processes) running advance cycles
    beneficiaries: int = 200    # movements: the shared pool gifts and transfers go to
    kinds: tuple[str, ...] = ("purchase", "gift", "transfer")  # movements: the others' mix


#: history: one purchase in this many goes to the long-history mobile (when it is not busy)
LONG_EVERY = 40
#: ... and their latency is also recorded under this kind
LONG_KIND = "long-history purchase"

#: movements: the kinds a client asks for (a `gift` is a bono for another mobile, a purchase
#: with a beneficiary), all of them under one more histogram, `movement`
MOVEMENT_KINDS = ("purchase", "gift", "transfer", "advance", "topup")
#: movements: what the closed-loop clients without an advance cycle ask for, by share
MOVEMENT_MIX = (("purchase", 0.4), ("gift", 0.3), ("transfer", 0.3))
TRANSFER_AMOUNT = 10_000
#: an advance of ADVANCE_AMOUNT (owed with its 10 % fee: 55,000) repaid by two top-ups of
#: TOPUP_AMOUNT: the first collects 30,000, the second the 25,000 left
ADVANCE_AMOUNT = 50_000
TOPUP_AMOUNT = 30_000
TOPUPS_PER_ADVANCE = 2


@dataclass
class _Stats:
    hists: dict[str, HdrHistogram] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    second_counts: dict[int, Counter[str]] = field(default_factory=dict)
    second_hists: dict[int, dict[str, HdrHistogram]] = field(default_factory=dict)

    def hist(self, table: dict[str, HdrHistogram], name: str) -> HdrHistogram:
        h = table.get(name)
        if h is None:
            h = table[name] = new_histogram()
        return h


class Generator:
    def __init__(self, spec: LoadSpec, pipe: Any) -> None:
        self.spec = spec
        self.pipe = pipe
        self.rng = random.Random(spec.seed * 1000 + spec.proc_index)
        self.stats = _Stats()
        self.outstanding = 0
        self.peak_outstanding = 0
        self.second_peak_outstanding = 0
        self.connections = 0
        self.connects = 0
        self.unfinished = 0
        self.last_tick = -1
        self.lag_max = 0.0
        self.answers: list[tuple[str, str, str, int, float, float]] = []
        self.recent_ids: deque[str] = deque(maxlen=1000)
        self.counter = itertools.count()
        self.long_tick = itertools.count()
        self.long_busy = False
        self.long_bytes = spec.long_msisdn.encode() if spec.proc_index == 0 else b""
        # idle keep-alive connections and when each became idle (the newest last)
        self.idle: list[tuple[HttpConnection, float]] = []
        host = spec.host.encode()
        self.host_header = b"Host: " + host + b":" + str(spec.port).encode() + b"\r\n"
        self.prefer = (b"Prefer: wait=" + str(spec.wait).encode() + b"\r\n") if spec.wait \
            else b""
        # trio clock <-> wall clock
        self.t0 = 0.0

    # -- requests ------------------------------------------------------------------------------
    def _purchase(self, msisdn: str) -> bytes:
        n = next(self.counter)
        body = (b'{"msisdn":"' + msisdn.encode() + b'","bono_id":"' + self.spec.bono_id.encode()
                + b'","channel":"' + CHANNELS[n % 2].encode() + b'"}')
        key = f"{self.spec.run_id}-{self.spec.proc_index}-{n}".encode()
        path = b"/echo" if self.spec.scenario == "echo" else b"/v1/purchases"
        return (b"POST " + path + b" HTTP/1.1\r\n" + self.host_header
                + b"Content-Type: application/json\r\nIdempotency-Key: " + key + b"\r\n"
                + self.prefer + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
                + body)

    def _post(self, path: str, body: bytes, key: str) -> bytes:
        return (b"POST " + path.encode() + b" HTTP/1.1\r\n" + self.host_header
                + b"Content-Type: application/json\r\nIdempotency-Key: " + key.encode()
                + b"\r\n" + self.prefer + b"Content-Length: "
                + str(len(body)).encode() + b"\r\n\r\n" + body)

    def _key(self) -> str:
        return f"{self.spec.run_id}-{self.spec.proc_index}-{next(self.counter)}"

    def _beneficiary(self) -> str:
        return f"54911{50_000_000 + self.rng.randrange(self.spec.beneficiaries):08d}"

    def movement_request(self, kind: str, msisdn: str = "", ref: str = "") -> bytes:
        """A movement's POST (README, "Movements"): a bono for oneself or for a mobile of the
        shared pool, airtime for one, an advance, a top-up's notice (`ref`)."""
        channel = CHANNELS[next(self.counter) % 2]
        payer = msisdn or self._distinct_msisdn()
        doc: dict[str, Any] = {"msisdn": payer}
        path = {"purchase": "/v1/purchases", "gift": "/v1/purchases",
                "transfer": "/v1/transfers", "advance": "/v1/advances",
                "topup": "/v1/topups"}[kind]
        if kind in ("purchase", "gift"):
            doc |= {"bono_id": self.spec.bono_id, "channel": channel}
        if kind in ("gift", "transfer"):
            doc["beneficiary"] = self._beneficiary()
        if kind == "transfer":
            doc |= {"amount": TRANSFER_AMOUNT, "channel": channel}
        if kind == "advance":
            doc |= {"amount": ADVANCE_AMOUNT, "channel": channel}
        if kind == "topup":
            doc |= {"amount": TOPUP_AMOUNT, "reference": ref}
        return self._post(path, msgspec.json.encode(doc), ref or self._key())

    def _get(self, path: str) -> bytes:
        return b"GET " + path.encode() + b" HTTP/1.1\r\n" + self.host_header + b"\r\n"

    def _distinct_msisdn(self) -> str:
        n = self.spec.msisdn_base + next(self.counter) * self.spec.procs + self.spec.proc_index
        return f"54911{n % 100_000_000:08d}"

    def _pool_msisdn(self) -> str:
        return f"54911{30_000_000 + self.rng.randrange(self.spec.msisdn_pool):08d}"

    def next_request(self) -> tuple[str, bytes]:
        scenario = self.spec.scenario
        if scenario in ("purchase", "slow-platforms", "faults", "in-flight"):
            return "purchase", self._purchase(self._distinct_msisdn())
        if scenario == "history":
            if (self.long_bytes and not self.long_busy
                    and next(self.long_tick) % LONG_EVERY == 0):
                self.long_busy = True
                return "purchase", self._purchase(self.spec.long_msisdn)
            return "purchase", self._purchase(self._distinct_msisdn())
        if scenario == "many-mobiles":
            return "bonos", self._get(f"/v1/mobiles/{self._distinct_msisdn()}/bonos?channel=ussd")
        if scenario == "echo":
            return "echo", self._purchase(self._distinct_msisdn())
        if scenario == "hot-mobile":
            return "purchase", self._purchase(self.rng.choice(self.spec.hot_msisdns))
        if scenario == "mix":
            r = self.rng.random()
            if r < 0.7:
                return "bonos", self._get(f"/v1/mobiles/{self._pool_msisdn()}/bonos?channel=ussd")
            if r < 0.9:
                return "purchase", self._purchase(self._pool_msisdn())
            if self.recent_ids:
                tx = self.recent_ids[self.rng.randrange(len(self.recent_ids))]
                return "status", self._get(f"/v1/transactions/{tx}")
            return "status", self._get(
                f"/v1/mobiles/{self._pool_msisdn()}/transactions?state=pending")
        raise ValueError(f"unknown scenario {scenario!r}")

    # -- accounting ----------------------------------------------------------------------------
    def _detail(self, kind: str, status: int, body: bytes, problem: bool, start: float,
                end: float) -> str:
        if problem:
            try:
                return str(_decode(body).get("code", ""))
            except (msgspec.DecodeError, AttributeError):
                return "?"
        if kind in MOVEMENT_KINDS and status in (200, 202):
            try:
                doc = _decode(body)
                tx_id, state, msisdn = doc["id"], doc["state"], doc["msisdn"]
            except (msgspec.DecodeError, KeyError, TypeError):
                return "?"
            self.recent_ids.append(tx_id)
            if self.spec.keep_answers:
                self.answers.append((tx_id, msisdn, state, status, self._wall(start),
                                     self._wall(end)))
            return str(state)
        if kind == "status" and status == 200:
            try:
                doc = _decode(body)
            except msgspec.DecodeError:
                return "?"
            if isinstance(doc, dict) and "state" in doc:
                return str(doc["state"])
            return "list"
        return ""

    def _wall(self, t: float) -> float:
        return self.wall0 + (t - self.t0)

    def record(self, kind: str, status: int, detail: str, start: float, end: float,
               *, timeline: bool = True) -> None:
        us = max(LOWEST_US, min(HIGHEST_US, int((end - start) * 1e6)))
        key = f"{kind} {status} {detail}"
        second = int(end - self.t0)
        if timeline and second > self.last_tick:
            sc = self.stats.second_counts.get(second)
            if sc is None:
                sc = self.stats.second_counts[second] = Counter()
                self.stats.second_hists[second] = {}
            sc[key] += 1
            self.stats.hist(self.stats.second_hists[second], kind).record_value(us)
        rel = start - self.t0
        if self.spec.warmup <= rel < self.spec.duration:
            self.stats.counts[key] += 1
            self.stats.hist(self.stats.hists, kind).record_value(us)
            if self.spec.scenario == "movements" and kind in MOVEMENT_KINDS:
                self.stats.hist(self.stats.hists, "movement").record_value(us)
            self.stats.hist(self.stats.hists, f"{kind} {status}").record_value(us)
            if detail and status < 300:
                self.stats.hist(self.stats.hists, f"{kind} {status} {detail}").record_value(us)

    # -- one exchange --------------------------------------------------------------------------
    async def exchange(self, conn: HttpConnection, kind: str, request: bytes, start: float
                       ) -> bool:
        """Run one request on `conn`; record it from `start`. False if `conn` is now unusable."""
        try:
            status, body, problem = await conn.roundtrip(request)
        except (ConnectionLost, OSError, trio.BrokenResourceError, ValueError) as exc:
            self.record(kind, 0, f"conn:{type(exc).__name__}", start, trio.current_time())
            return False
        finally:
            if self.long_busy and self.long_bytes in request:
                self.long_busy = False
        end = trio.current_time()
        self.record(kind, status, self._detail(kind, status, body, problem, start, end), start,
                    end)
        if self.long_bytes and self.long_bytes in request and \
                self.spec.warmup <= start - self.t0 < self.spec.duration:
            # history: the long-history mobile's purchases on their own too
            us = max(LOWEST_US, min(HIGHEST_US, int((end - start) * 1e6)))
            self.stats.hist(self.stats.hists, LONG_KIND).record_value(us)
        return not conn.closed

    async def exchange_body(self, conn: HttpConnection, kind: str, request: bytes,
                            start: float) -> tuple[int, bytes, bool]:
        """`exchange` that also hands back the answer: (status, body, `conn` still usable);
        status 0 when the exchange failed."""
        try:
            status, body, problem = await conn.roundtrip(request)
        except (ConnectionLost, OSError, trio.BrokenResourceError, ValueError) as exc:
            self.record(kind, 0, f"conn:{type(exc).__name__}", start, trio.current_time())
            return 0, b"", False
        end = trio.current_time()
        self.record(kind, status, self._detail(kind, status, body, problem, start, end), start,
                    end)
        return status, body, not conn.closed

    async def _connect(self) -> HttpConnection | None:
        try:
            conn = await HttpConnection.open(self.spec.host, self.spec.port)
        except OSError as exc:
            self.stats.counts[f"connect 0 {type(exc).__name__}"] += 1
            return None
        self.connections += 1
        self.connects += 1
        return conn

    async def _idle_or_new(self) -> HttpConnection | None:
        """The most recently idle connection, or a new one. Connections idle longer than
        `IDLE_MAX_S` are closed first, as a client's pool does: the server closes them at its
        keep-alive timeout, and a request sent as it does so would be lost."""
        now = trio.current_time()
        while self.idle and now - self.idle[0][1] > IDLE_MAX_S:
            stale, _ = self.idle.pop(0)
            await self._drop(stale)
        if self.idle:
            return self.idle.pop()[0]
        return await self._connect()

    async def _drop(self, conn: HttpConnection) -> None:
        self.connections -= 1
        with trio.CancelScope(shield=True), contextlib.suppress(OSError,
                                                               trio.BrokenResourceError):
            await conn.aclose()

    def _unanswered(self, kind: str, start: float) -> None:
        """The load generator gave up on this request (`drain` seconds after the end)."""
        self.unfinished += 1
        self.record(kind, 0, "unanswered", start, trio.current_time(), timeline=False)

    def _begin(self) -> None:
        self.outstanding += 1
        if self.outstanding > self.second_peak_outstanding:
            self.second_peak_outstanding = self.outstanding
            self.peak_outstanding = max(self.peak_outstanding, self.outstanding)

    # -- disciplines ---------------------------------------------------------------------------
    async def closed_client(self, end: float) -> None:
        conn: HttpConnection | None = None
        while trio.current_time() < end:
            if conn is None:
                conn = await self._connect()
                if conn is None:
                    await trio.sleep(0.1)
                    continue
            kind, request = self.next_request()
            self._begin()
            start = trio.current_time()
            try:
                ok = await self.exchange(conn, kind, request, start)
            except trio.Cancelled:
                self._unanswered(kind, start)
                raise
            finally:
                self.outstanding -= 1
            if not ok:
                await self._drop(conn)
                conn = None
        if conn is not None:
            await self._drop(conn)

    async def movements_client(self, end: float, index: int) -> None:
        """movements: a closed-loop client. The first `advance_clients` (of all processes)
        each own a well-known mobile (always prepaid and active) and run advance cycles on it:
        its balance set to 0 at the simulator, an advance, then TOPUPS_PER_ADVANCE recharges,
        each made at the simulator (`POST /control/topups`) and notified to Gestor
        (`POST /v1/topups`, its reference as Idempotency-Key) as the recharge platform would.
        The others buy bonos for themselves or for the shared pool and send airtime to it."""
        spec = self.spec
        number = spec.proc_index + spec.procs * index
        conns: dict[str, HttpConnection | None] = {"gestor": None, "sim": None}
        sim_host = b"Host: " + spec.host.encode() + b":" + str(spec.sim_port).encode()

        async def call(to: str, kind: str, request: bytes) -> tuple[int, bytes]:
            conn = conns[to]
            if conn is None:
                conn = conns[to] = await self._connect_to(spec.sim_port if to == "sim"
                                                          else spec.port)
                if conn is None:
                    await trio.sleep(0.1)
                    return 0, b""
            self._begin()
            start = trio.current_time()
            try:
                status, body, ok = await self.exchange_body(conn, kind, request, start)
            except trio.Cancelled:
                self._unanswered(kind, start)
                raise
            finally:
                self.outstanding -= 1
            if not ok:
                await self._drop(conn)
                conns[to] = None
            return status, body

        def sim_request(method: bytes, path: str, doc: dict[str, Any]) -> bytes:
            body = msgspec.json.encode(doc)
            return (method + b" " + path.encode() + b" HTTP/1.1\r\n" + sim_host
                    + b"\r\nContent-Type: application/json\r\nContent-Length: "
                    + str(len(body)).encode() + b"\r\n\r\n" + body)

        mix = _cumulative(tuple((k, share) for k, share in MOVEMENT_MIX if k in spec.kinds))
        cycle = 0
        try:
            while trio.current_time() < end:
                if number >= min(spec.advance_clients, 100):
                    if not mix:
                        return
                    r = self.rng.random()
                    kind = next((k for k, share in mix if r < share), mix[-1][0])
                    await call("gestor", kind, self.movement_request(kind))
                    continue
                mobile = f"54911000000{number:02d}"
                await call("sim", "sim", sim_request(b"PUT", f"/control/accounts/{mobile}",
                                                     {"balance": 0}))
                await call("gestor", "advance", self.movement_request("advance", mobile))
                for n in range(TOPUPS_PER_ADVANCE):
                    ref = f"{spec.run_id}-{number}-{cycle}-{n}"
                    await call("sim", "sim", sim_request(
                        b"POST", "/control/topups",
                        {"msisdn": mobile, "amount": TOPUP_AMOUNT, "reference": ref}))
                    # the recharge platform's notice, retried (same reference) while the line
                    # is busy or the server can't take it, as the simulator's notifier does
                    for _ in range(20):
                        status, _ = await call("gestor", "topup",
                                               self.movement_request("topup", mobile, ref))
                        if status not in (0, 409, 429, 503):
                            break
                        await trio.sleep(0.05)
                cycle += 1
        finally:
            for conn in conns.values():
                if conn is not None:
                    await self._drop(conn)

    async def _connect_to(self, port: int) -> HttpConnection | None:
        try:
            conn = await HttpConnection.open(self.spec.host, port)
        except OSError as exc:
            self.stats.counts[f"connect 0 {type(exc).__name__}"] += 1
            return None
        self.connections += 1
        self.connects += 1
        return conn

    async def open_request(self, slots: trio.Semaphore, kind: str, request: bytes,
                           scheduled: float) -> None:
        self._begin()  # outstanding from its scheduled time, queued or not
        try:
            async with slots:
                conn = await self._idle_or_new()
                if conn is None:
                    self.record(kind, 0, "conn:connect", scheduled, trio.current_time())
                    return
                if await self.exchange(conn, kind, request, scheduled):
                    self.idle.append((conn, trio.current_time()))
                else:
                    await self._drop(conn)
        except trio.Cancelled:
            self._unanswered(kind, scheduled)
            raise
        finally:
            self.outstanding -= 1

    async def open_dispatcher(self, nursery: trio.Nursery, end: float) -> None:
        spec = self.spec
        interval = 1.0 / spec.rate
        first = self.t0 + spec.proc_index / (spec.rate * spec.procs)  # interleave processes
        slots = trio.Semaphore(spec.connections)
        i = 0
        while True:
            scheduled = first + i * interval
            if scheduled >= end:
                return
            now = trio.current_time()
            if scheduled > now:
                await trio.sleep_until(scheduled)
                now = trio.current_time()
            # catch up on everything already due (the loop may have been busy)
            while scheduled <= now and scheduled < end:
                self.lag_max = max(self.lag_max, now - scheduled)
                kind, request = self.next_request()
                nursery.start_soon(self.open_request, slots, kind, request, scheduled)
                i += 1
                scheduled = first + i * interval

    # -- reporting -----------------------------------------------------------------------------
    async def ticker(self) -> None:
        second = 0
        while True:
            await trio.sleep_until(self.t0 + second + 1 + 0.02)
            self._send_tick(second)
            second += 1

    def _send_tick(self, second: int) -> None:
        self.last_tick = max(self.last_tick, second)
        counts = self.stats.second_counts.pop(second, Counter())
        hists = self.stats.second_hists.pop(second, {})
        self.pipe.send({
            "type": "tick", "proc": self.spec.proc_index, "second": second,
            "counts": dict(counts),
            "hists": {k: h.encode() for k, h in hists.items()},
            "outstanding": self.second_peak_outstanding, "connections": self.connections,
        })
        self.second_peak_outstanding = self.outstanding

    async def run(self) -> None:
        spec = self.spec
        self.wall0 = spec.t0
        self.t0 = trio.current_time() + (spec.t0 - time.time())
        if self.t0 > trio.current_time():
            await trio.sleep_until(self.t0)
        end = self.t0 + spec.duration
        async with trio.open_nursery() as outer:
            outer.start_soon(self.ticker)
            with trio.move_on_at(end + spec.drain):
                async with trio.open_nursery() as nursery:
                    if spec.scenario == "movements":
                        for i in range(spec.connections):
                            nursery.start_soon(self.movements_client, end, i)
                    elif spec.mode == "closed":
                        for _ in range(spec.connections):
                            nursery.start_soon(self.closed_client, end)
                    else:
                        await self.open_dispatcher(nursery, end)
            outer.cancel_scope.cancel()
        # flush the seconds the ticker did not get to
        last = max([*self.stats.second_counts, -1])
        for second in range(self.last_tick + 1, last + 1):
            self._send_tick(second)
        for conn, _ in self.idle:
            await self._drop(conn)
        self.pipe.send({
            "type": "done", "proc": spec.proc_index,
            "hists": {k: h.encode() for k, h in self.stats.hists.items()},
            "counts": dict(self.stats.counts),
            "answers": self.answers,
            "unfinished": self.unfinished,
            "peak_outstanding": self.peak_outstanding,
            "connects": self.connects,
            "lag_max_s": self.lag_max,
        })


def _cumulative(shares: tuple[tuple[str, float], ...]) -> list[tuple[str, float]]:
    """Shares → cumulative shares of their sum (a subset of MOVEMENT_MIX is renormalised)."""
    out, total, whole = [], 0.0, sum(share for _, share in shares)
    for kind, share in shares:
        total += share / whole
        out.append((kind, total))
    return out


def run_process(spec: LoadSpec, pipe: Any) -> None:
    """Entry point of a load process (multiprocessing target)."""
    try:
        trio.run(Generator(spec, pipe).run)
    except BaseException as exc:
        pipe.send({"type": "error", "proc": spec.proc_index, "error": repr(exc)})
        raise
    finally:
        pipe.close()
