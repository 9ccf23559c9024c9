"""Property-based fuzzing of every route (hypothesis), over real HTTP to the app served by
hypercorn on a loopback socket: zero 5xx, zero hangs, every refusal from the app a
problem+json, and nothing written by a refused request.

The routes come from `app.url_map`, so a route added later is fuzzed without touching this
file. Two runs: requests an HTTP client would send (near-valid JSON, odd path segments, query
strings and headers; the admin key half the time), and raw bytes over a trio socket (request
targets, headers and bodies no client library would send; websocket handshakes). Hypothesis
drives from a worker thread, each example being one exchange run on the test's trio loop with
a deadline. `derandomize=True`: the same examples every run, so CI cannot flake.
"""

from __future__ import annotations

import json
import re
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import trio
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from werkzeug.routing import Rule

from tests.integration._served import ADMIN, PROBLEM, RawAnswer, Served, raw_exchange, served
from tests.ruletext import SEED

__all__ = ["served"]  # the fixture, imported for pytest

MSISDN = "5491100000001"
EXAMPLE_DEADLINE = 15.0  # seconds for one exchange, on a loaded box
#: Examples per run, spread evenly over the routes. Measured on the 2-core box: 600 HTTP
#: examples in 7.8 s and 400 raw ones in 6.7 s at a load average of 4; 400 and 300 in 21 s and
#: 11 s at a load average of 7. Plus ~7 s to start the server for each run.
HTTP_EXAMPLES = 500
RAW_EXAMPLES = 350

def fuzz_settings(max_examples: int) -> settings:
    return settings(
    max_examples=max_examples, derandomize=True, database=None, deadline=None, print_blob=True,
    phases=(Phase.explicit, Phase.generate, Phase.shrink),
    suppress_health_check=list(HealthCheck),
    )
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")
_ARG = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")

# -- what a request is made of ----------------------------------------------------------------

SPECIAL = ["", "0", "1", "-1", "\u00b2", "\uff11", "%", "\x00", "..", "/", " ", "\u202e",
           "9" * 25, "9" * 5000, "2147483648", "9223372036854775808", "1e9", "NaN", "true",
           "0001-01-01", "9999-12-31T23:59:59-12:00", "2026-01-01T00:00:00Z", "pending",
           "ussd", MSISDN, "+" + MSISDN, str(uuid.UUID(int=7)), "NO_DATA_BONOS", "DATA_2GB_7D",
           "\ud800", "\U0001f600" * 30]
texts = st.one_of(st.sampled_from(SPECIAL), st.text(max_size=40),
                  st.from_regex(r"[0-9]{1,30}", fullmatch=True))
VALID_SEGMENTS = {
    "raw_msisdn": [MSISDN, "+" + MSISDN],
    "tx_id": [str(uuid.UUID(int=7))],
    "raw": ["1", "2"],
    "code": ["NO_DATA_BONOS", "BLACKLISTED"],
    "filename": ["x.txt"],
}


def quote(text: str) -> str:
    return urllib.parse.quote(text.encode("utf-8", "surrogatepass"), safe="")


def percent(data: bytes) -> str:
    return "".join(f"%{b:02X}" for b in data)


@st.composite
def segments(draw: st.DrawFn, name: str) -> str:
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return draw(st.sampled_from(VALID_SEGMENTS.get(name, ["x"])))
    if choice == 1:
        return percent(draw(st.binary(min_size=1, max_size=12)))
    return quote(draw(texts)) or "x"


def path_of(draw: st.DrawFn, rule: str) -> str:
    return _ARG.sub(lambda m: draw(segments(m.group(1))), rule)


QUERY_KEYS = ["limit", "state", "channel", "since", "until", "strict", "actor", "action", "after"]


@st.composite
def queries(draw: st.DrawFn) -> str:
    pairs = draw(st.lists(st.tuples(st.one_of(st.sampled_from(QUERY_KEYS), texts), texts),
                          max_size=4))
    query = "&".join(f"{quote(k)}={quote(v)}" for k, v in pairs)
    if draw(st.booleans()):
        query += "&" + percent(draw(st.binary(max_size=8))) + "=" + percent(
            draw(st.binary(max_size=8)))
    return query


BODY_KEYS = ["msisdn", "bono_id", "channel", "source", "description", "based_on", "msisdns",
             "customers", "reason", "until", "note"]
json_leaves = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                        st.floats(allow_nan=False, allow_infinity=False), texts)
json_values = st.recursive(
    json_leaves,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.one_of(st.sampled_from(BODY_KEYS), texts), inner,
                                            max_size=3)),
    max_leaves=12,
)
near_valid_objects = st.fixed_dictionaries(
    {}, optional={
        "msisdn": st.one_of(st.just(MSISDN), json_values),
        "bono_id": st.one_of(st.sampled_from(["DATA_2GB_7D", "VOICE_100", "NOPE"]), json_values),
        "channel": st.one_of(st.just("ussd"), json_values),
        "source": st.one_of(st.just(SEED), json_values),
        "description": json_values, "based_on": st.one_of(st.just(1), json_values),
        "msisdns": st.one_of(st.just([MSISDN]), json_values),
        "customers": st.one_of(st.just([{"segment": "corporate", "balance": 5}]), json_values),
        "reason": json_values, "until": json_values, "note": json_values,
    })


@st.composite
def bodies(draw: st.DrawFn) -> bytes | None:
    kind = draw(st.integers(0, 7))
    if kind == 0:
        return None
    if kind == 1:
        return draw(st.binary(max_size=300))
    if kind == 2:
        depth = draw(st.integers(1, 3000))
        return b"[" * depth + b"]" * depth
    if kind == 3:  # duplicate keys, NaN, lone surrogates, huge numbers, invalid UTF-8 inside
        piece = draw(st.sampled_from([b'"a": 1, "a": 2', b'"a": NaN', b'"a": "\\ud800"',
                                      b'"a": ' + b"9" * 5000, b'"a": "\xff"',
                                      b'"a": 1e999', b'"a": "\\u0000"']))
        return b"{" + piece + b"}"
    if kind == 4:  # TOML
        return draw(st.sampled_from([SEED, "a = " + "[" * 3000, "x = 1\n", "[[validation]]\n"])
                    ).encode()
    text = json.dumps(draw(near_valid_objects), ensure_ascii=draw(st.booleans()))
    return text.encode("utf-8", "surrogatepass")


CONTENT_TYPES = [None, "application/json", "application/json; charset=utf-8",
                 "application/toml", "text/plain", "application/x-www-form-urlencoded",
                 "multipart/form-data; boundary=x", "application/json; charset=latin1",
                 "application/problem+json", ";;", "application/json; charset"]
header_values = st.binary(max_size=40).map(
    lambda b: bytes(c for c in b if c >= 0x20 and c != 0x7f).strip())


@st.composite
def header_sets(draw: st.DrawFn, admin: bool) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    if admin and draw(st.booleans()):
        headers.update(ADMIN)
    elif draw(st.booleans()):
        headers["Authorization"] = draw(st.sampled_from([b"Bearer wrong", b"Basic x"]))
    content_type = draw(st.one_of(st.sampled_from(CONTENT_TYPES), header_values))
    if content_type is not None:
        headers["Content-Type"] = content_type
    for name in ("Idempotency-Key", "Prefer", "X-Client-Id", "X-Operator"):
        if draw(st.booleans()):
            headers[name] = draw(st.one_of(
                header_values, st.sampled_from([b"wait=0", b"wait=0.5", b"wait=1"]),
                st.integers(0, 10**9).map(lambda n: b"k-%d" % n)))
    return headers


# -- the invariants -----------------------------------------------------------------------------

def check_answer(rule: str, status: int | None, headers: dict[str, str]) -> None:
    """No 5xx; a refusal by the app (not hypercorn's own 400 for broken HTTP, or a connection
    closed under garbage pipelined behind a request) is a problem document."""
    assert status is None or status < 500, (status, rule)
    from_app = "gestor-worker" in headers  # hypercorn's own 400s for broken HTTP lack it
    if from_app and status is not None and status >= 400:
        report = status == 409 and rule == "/v1/admin/reconciliation"  # a mismatch report
        assert report or headers.get("content-type") == PROBLEM, (status, rule, headers)


async def exchange(served: Served, send: Callable[[], Awaitable[tuple[int | None, dict[str, str]]]],
                   rule: str, seen: Counter[tuple[str, int | None]]) -> None:
    """One example: the answer's invariants, and no row written when it was refused."""
    with trio.fail_after(EXAMPLE_DEADLINE):
        before = await served.counts()
        status, headers = await send()
        seen[rule, status] += 1
        check_answer(rule, status, headers)
        if status is not None and 400 <= status < 500:
            assert await served.counts() == before, (status, rule)


def check_coverage(seen: Counter[tuple[str, int | None]], rules: list[Rule],
                   expected: set[int]) -> None:
    """The examples reached every route, and the app both served and refused some of them."""
    assert {r.rule for r in rules} <= {rule for rule, _ in seen}
    statuses = {status for _, status in seen}
    assert any(s is not None and 200 <= s < 300 for s in statuses), statuses
    assert expected <= statuses, statuses


async def fuzz_each_route(rules: list[Rule], strategy: Callable[[Rule], st.SearchStrategy[Any]],
                          one: Callable[..., Awaitable[None]], examples: int) -> None:
    """Hypothesis, in a worker thread, draws `examples` examples of `strategy(rule)` for each
    rule in turn; each one runs as `one(rule.rule, *example)` on this trio loop."""
    def fuzz_route(rule: Rule) -> None:
        @fuzz_settings(examples)
        @given(strategy(rule))
        def fuzz(example: tuple[Any, ...]) -> None:
            trio.from_thread.run(one, rule.rule, *example)

        fuzz()

    def fuzz_all() -> None:
        for rule in rules:
            fuzz_route(rule)

    with trio.fail_after(600):
        await trio.to_thread.run_sync(fuzz_all)


# -- the tests ---------------------------------------------------------------------------------

async def test_fuzz_every_route_over_http(served: Served) -> None:
    rules = [r for r in served.app.url_map.iter_rules() if not r.websocket]
    assert len(rules) >= 15
    seen: Counter[tuple[str, int | None]] = Counter()

    @st.composite
    def requests(draw: st.DrawFn, rule: Rule) -> tuple[str, str, dict[str, Any], bytes | None]:
        method = draw(st.one_of(st.sampled_from(sorted(rule.methods or ())),
                                st.sampled_from(METHODS)))
        path = path_of(draw, rule.rule)
        query = draw(queries())
        target = f"{path}?{query}" if query else path
        headers = draw(header_sets(rule.rule.startswith("/v1/admin/")))
        return method, target, headers, draw(bodies())

    async with httpx.AsyncClient(base_url=served.url, timeout=EXAMPLE_DEADLINE) as http:

        async def one(rule: str, method: str, target: str, headers: dict[str, Any],
                      body: bytes | None) -> None:
            async def send() -> tuple[int | None, dict[str, str]]:
                response = await http.request(method, target, headers=headers, content=body)
                return response.status_code, {k.lower(): v for k, v in response.headers.items()}

            await exchange(served, send, rule, seen)

        await fuzz_each_route(rules, requests, one, HTTP_EXAMPLES // len(rules) + 1)
    check_coverage(seen, rules, {400, 401, 404, 405, 415, 422})


async def test_fuzz_every_route_with_raw_bytes(served: Served) -> None:
    rules = list(served.app.url_map.iter_rules())
    seen: Counter[tuple[str, int | None]] = Counter()
    tokens = st.one_of(st.sampled_from([m.encode() for m in METHODS]),
                       st.from_regex(rb"[A-Za-z!#$%&'*+.^_`|~-]{1,10}", fullmatch=True))

    @st.composite
    def raw_requests(draw: st.DrawFn, rule: Rule) -> tuple[bytes, bool, bool]:
        upgrade = rule.websocket and draw(st.integers(0, 3)) > 0
        method = b"GET" if upgrade else draw(tokens)
        path = path_of(draw, rule.rule).encode()
        if draw(st.booleans()):  # raw bytes where a segment or the query would be
            path += draw(st.binary(max_size=20)).replace(b" ", b"").replace(b"\r", b"")
        query = draw(queries()).encode()
        target = path + (b"?" + query if query else b"")
        lines = [b"Host: 127.0.0.1"]
        if upgrade:
            lines += [b"Connection: Upgrade", b"Upgrade: websocket", b"Sec-WebSocket-Version: 13",
                      b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="]
        else:
            lines.append(b"Connection: close")
        if rule.rule.startswith("/v1/admin/") and draw(st.booleans()):
            lines.append(b"Authorization: " + ADMIN["Authorization"].encode())
        for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2, 3]))):
            # (never a Content-Length: one promising more than is sent would wait for it)
            name = draw(st.one_of(st.sampled_from([b"Content-Type", b"Idempotency-Key",
                                                   b"Prefer", b"X-Client-Id",
                                                   b"Transfer-Encoding", b"Expect"]),
                                  st.binary(min_size=1, max_size=10)))
            lines.append(name + b": " + draw(st.binary(max_size=30)).replace(b"\n", b""))
        body = draw(bodies()) or b""
        if body and not upgrade:
            # A shorter length leaves the rest as a garbage pipelined request: hypercorn then
            # answers 400, or closes the connection if the app's answer had begun.
            cut = len(body) if draw(st.integers(0, 3)) else draw(st.integers(0, len(body)))
            lines.append(b"Content-Length: %d" % cut)
        head = method + b" " + target + b" HTTP/1.1\r\n" + b"\r\n".join(lines) + b"\r\n\r\n"
        return head + (b"" if upgrade else body), method == b"HEAD", upgrade

    async def one(rule: str, request: bytes, head: bool, upgrade: bool) -> None:
        async def send() -> tuple[int | None, dict[str, str]]:
            answer: RawAnswer = await raw_exchange(served.host, served.port, request,
                                                   head=head, upgrade=upgrade)
            return answer.status, answer.headers

        await exchange(served, send, rule, seen)

    await fuzz_each_route(rules, raw_requests, one, RAW_EXAMPLES // len(rules) + 1)
    check_coverage(seen, rules, {101, 400, 401, 405})
