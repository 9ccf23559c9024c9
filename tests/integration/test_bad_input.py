"""Each bad input named in issue 10, over real HTTP to the app served by hypercorn: a 4xx
application/problem+json naming the field at fault, and not one row written."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import trio

from tests.integration._served import ADMIN, PROBLEM, Served, raw_exchange, served
from tests.integration.conftest import sim_stats

__all__ = ["served"]  # the fixture, imported for pytest

MSISDN = "5491100000001"
BONO = "DATA_2GB_7D"
JSON_HEADERS = {"Content-Type": "application/json", "Idempotency-Key": "bad-input"}
DEEP_TOML = "a = " + "[" * 5000 + "]" * 5000 + "\n"


def check_problem(response: httpx.Response, status: int, code: str, field: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert (problem["status"], problem["code"], problem["field"]) == (status, code, field)
    assert problem["detail"]


@pytest.fixture
async def http(served: Served) -> Any:
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as client:
        yield client


# (method, path, headers, body, status, code, field)
CASES: list[tuple[str, str, dict[str, Any], bytes | None, int, str, str]] = [
    ("POST", "/v1/purchases", JSON_HEADERS,
     b'{"msisdn": "\xff\xfe5491100000001", "bono_id": "DATA_2GB_7D"}',
     400, "INVALID_ENCODING", "body"),
    ("POST", "/v1/purchases", JSON_HEADERS,
     b'{"msisdn": ' + b"[" * 1000 + b"]" * 1000 + b', "bono_id": "DATA_2GB_7D"}',
     400, "JSON_TOO_DEEP", "body"),
    ("POST", "/v1/purchases", JSON_HEADERS, b"[" * 1000 + b"]" * 1000, 400, "JSON_TOO_DEEP",
     "body"),
    ("POST", "/v1/purchases", JSON_HEADERS,
     b'{"msisdn": "5491100000001", "bono_id": "DATA_2GB_7D", "bono_id": "VOICE_100"}',
     400, "DUPLICATE_KEY", "bono_id"),
    ("POST", "/v1/purchases", JSON_HEADERS,
     b'{"msisdn": "5491100000001\\ud800", "bono_id": "DATA_2GB_7D"}',
     400, "INVALID_STRING", "body.msisdn"),
    ("POST", "/v1/purchases", JSON_HEADERS,
     b'{"msisdn": "5491100000001", "bono_id": "DATA_2GB_7D", "channel": NaN}',
     400, "INVALID_JSON", "body"),
    ("POST", "/v1/purchases", {**JSON_HEADERS, "Content-Type": "text/plain"},
     b'{"msisdn": "5491100000001", "bono_id": "DATA_2GB_7D"}',
     415, "UNSUPPORTED_MEDIA_TYPE", "Content-Type"),
    ("POST", "/v1/purchases", {"Idempotency-Key": "bad-input"},
     b'{"msisdn": "5491100000001", "bono_id": "DATA_2GB_7D"}',
     415, "UNSUPPORTED_MEDIA_TYPE", "Content-Type"),
    ("POST", "/v1/purchases", {**JSON_HEADERS,
                               "Content-Type": "application/x-www-form-urlencoded"},
     b'{"msisdn": "5491100000001", "bono_id": "DATA_2GB_7D"}',
     415, "UNSUPPORTED_MEDIA_TYPE", "Content-Type"),
    ("POST", "/v1/purchases", {**JSON_HEADERS, "Content-Type": "application/json; charset=latin1"},
     b'{"msisdn": "5491100000001", "bono_id": "DATA_2GB_7D"}',
     415, "UNSUPPORTED_MEDIA_TYPE", "Content-Type"),
    ("POST", "/v1/purchases", {**JSON_HEADERS, "Prefer": "wait=\u00b2".encode()},
     b'{"msisdn": "5491100000001", "bono_id": "DATA_2GB_7D"}', 400, "INVALID_PREFER", "Prefer"),
    ("POST", "/v1/purchases", {**JSON_HEADERS, "X-Client-Id": "two words"},
     b'{"msisdn": "5491100000001", "bono_id": "DATA_2GB_7D"}',
     400, "INVALID_CLIENT_ID", "X-Client-Id"),
    ("POST", "/v1/purchases", {**JSON_HEADERS, "X-Client-Id": "c" * 65},
     b'{"msisdn": "5491100000001", "bono_id": "DATA_2GB_7D"}',
     400, "INVALID_CLIENT_ID", "X-Client-Id"),
    ("GET", f"/v1/mobiles/{MSISDN}/transactions?limit=%C2%B2", {}, None,
     422, "INVALID_LIMIT", "limit"),
    ("GET", f"/v1/mobiles/{MSISDN}/transactions?limit=" + "9" * 5000, {}, None,
     422, "INVALID_LIMIT", "limit"),
    ("GET", "/v1/transactions/" + "\uff11" * 32, {}, None, 400, "INVALID_TRANSACTION_ID", "id"),
    ("GET", "/v1/admin/rules/%C2%B2", ADMIN, None, 400, "INVALID_VERSION", "version"),
    ("GET", "/v1/admin/rules/99999999999999999999", ADMIN, None,
     400, "INVALID_VERSION", "version"),
    ("GET", "/v1/admin/rules/2147483648", ADMIN, None, 400, "INVALID_VERSION", "version"),
    ("POST", "/v1/admin/rules/99999999999999999999/activate", ADMIN, None,
     400, "INVALID_VERSION", "version"),
    ("GET", "/v1/admin/reconciliation?since=0001-01-01", ADMIN, None,
     422, "INVALID_TIME", "since"),
    ("GET", "/v1/admin/reconciliation?until=9999-12-31T23:59:59-12:00", ADMIN, None,
     422, "INVALID_TIME", "until"),
    ("GET", "/v1/admin/reconciliation?strict=maybe", ADMIN, None, 422, "INVALID_FLAG", "strict"),
    ("POST", "/v1/admin/rules/validate", {**ADMIN, "Content-Type": "application/toml"},
     DEEP_TOML.encode(), 422, "INVALID_RULES", "source"),
    ("POST", "/v1/admin/rules", {**ADMIN, "Content-Type": "application/toml"},
     DEEP_TOML.encode(), 422, "INVALID_RULES", "source"),
    ("POST", "/v1/admin/rules", {**ADMIN, "Content-Type": "text/plain"},
     b"description = 'x'\n", 415, "UNSUPPORTED_MEDIA_TYPE", "Content-Type"),
    ("POST", "/v1/admin/rules", {**ADMIN, "Content-Type": "application/json"},
     b'{"source": "description = 1", "based_on": 99999999999999999999}',
     400, "INVALID_NUMBER", "body"),
    ("POST", "/v1/admin/rules/1/dry-run", {**ADMIN, "Content-Type": "application/json"},
     b'{"msisdns": ["5491100000001"], "bono_id": ["x"]}', 422, "INVALID_BONO_ID", "bono_id"),
    ("POST", "/v1/admin/rules/1/dry-run", {**ADMIN, "Content-Type": "application/json"},
     b'{"msisdns": ["5491100000001"], "bono_id": {"a": 1}}', 422, "INVALID_BONO_ID", "bono_id"),
    ("DELETE", f"/v1/admin/mobiles/{MSISDN}/restrictions/%00", ADMIN, None,
     422, "INVALID_CODE", "code"),
    ("PUT", f"/v1/admin/mobiles/{MSISDN}/restrictions/%00", ADMIN, None,
     422, "INVALID_CODE", "code"),
    ("PUT", f"/v1/admin/mobiles/{MSISDN}/restrictions/BLACKLISTED",
     {**ADMIN, "Content-Type": "application/json"}, b'{"reason": "a\\u0000b"}',
     400, "INVALID_STRING", "body.reason"),
    ("PUT", f"/v1/admin/mobiles/{MSISDN}/restrictions/BLACKLISTED",
     {**ADMIN, "Content-Type": "application/json"}, b'{"until": "0001-01-01T00:00:00+01:00"}',
     422, "INVALID_TIME", "until"),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]} {c[1][:60]} {c[5]}" for c in CASES])
async def test_bad_input_is_a_4xx_problem_naming_the_field_and_writes_nothing(
    served: Served, http: httpx.AsyncClient, control: httpx.AsyncClient,
    case: tuple[str, str, dict[str, Any], bytes | None, int, str, str],
) -> None:
    method, path, headers, body, status, code, field = case
    with trio.fail_after(30):
        before = await served.counts()
        response = await http.request(method, path, headers=headers, content=body)
        check_problem(response, status, code, field)
        assert await served.counts() == before
        assert (await sim_stats(control))["debits"] == 0


async def test_alarm_feed_refuses_a_bad_since_in_the_handshake(served: Served) -> None:
    """The websocket upgrade is refused with a 400 problem+json (no 101, nothing to close)."""
    with trio.fail_after(30):
        for since, accepted in (("%C2%B2", False), ("9" * 5000, False), ("-1", False),
                                ("12", True)):
            request = (f"GET /v1/alarms?since={since} HTTP/1.1\r\nHost: x\r\n"
                       "Connection: Upgrade\r\nUpgrade: websocket\r\n"
                       "Sec-WebSocket-Version: 13\r\n"
                       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").encode()
            answer = await raw_exchange(served.host, served.port, request, upgrade=True)
            if accepted:
                assert answer.status == 101
                continue
            assert answer.status == 400, answer
            assert answer.headers["content-type"] == PROBLEM
            problem = httpx.Response(400, content=answer.body).json()
            assert problem["code"] == "INVALID_SINCE" and problem["field"] == "since"


async def test_a_request_too_broken_for_http_is_a_400_from_the_http_layer(
    served: Served, control: httpx.AsyncClient,
) -> None:
    """h11 hints 501 for a Transfer-Encoding it does not implement; the client is told 400."""
    with trio.fail_after(30):
        before = await served.counts()
        for coding in (b"gzip", b"", b"chunked, gzip"):
            answer = await raw_exchange(
                served.host, served.port,
                b"POST /v1/purchases HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Idempotency-Key: te\r\nTransfer-Encoding: " + coding + b"\r\n\r\n"
                b'{"msisdn": "5491100000001", "bono_id": "DATA_2GB_7D"}')
            assert answer.status == 400, (coding, answer)
            assert "gestor-worker" not in answer.headers  # answered before the app
        assert await served.counts() == before
        assert (await sim_stats(control))["debits"] == 0


async def test_bytes_after_a_connection_close_request_do_not_replace_its_answer(
    served: Served, control: httpx.AsyncClient,
) -> None:
    """The app's answer, not a 400 from the HTTP layer, for what the app did (RFC 9112 9.6)."""
    def request(body: bytes, content_type: bytes) -> bytes:
        return (b"POST /v1/purchases HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                b"Idempotency-Key: after-close\r\nPrefer: wait=10\r\nContent-Type: "
                + content_type + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body
                + b"GARBAGE / HTTP/1.1\r\n\r\n\x00\xff")

    body = b'{"msisdn": "5491100000001", "bono_id": "DATA_2GB_7D"}'
    with trio.fail_after(30):
        before = await served.counts()
        refused = await raw_exchange(served.host, served.port, request(body, b"text/plain"))
        assert refused.status == 415 and refused.headers["content-type"] == PROBLEM
        assert await served.counts() == before
        bought = await raw_exchange(served.host, served.port, request(body, b"application/json"))
        assert bought.status == 200 and "gestor-worker" in bought.headers
        assert httpx.Response(200, content=bought.body).json()["state"] == "completed"
        assert (await served.counts())["transactions"] == before["transactions"] + 1
        assert (await sim_stats(control))["debits"] == 1


async def test_a_json_body_with_the_header_still_buys(http: httpx.AsyncClient) -> None:
    """The strict decoding refuses only what is wrong: charset=utf-8 and any key order pass."""
    with trio.fail_after(30):
        response = await http.post(
            "/v1/purchases", headers={**JSON_HEADERS, "Prefer": "wait=5",
                                      "Content-Type": "application/json; charset=UTF-8"},
            content=b'{"bono_id": "DATA_2GB_7D", "msisdn": "+5491100000001"}')
        assert response.status_code == 200, response.text
        assert response.json()["state"] == "completed"


async def test_an_unexpected_error_is_a_500_problem_with_a_request_id(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The answer of last resort: a bug is logged once with its traceback and a request id."""
    from gestor.purchase import PurchaseService

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(PurchaseService, "offers", broken)
    with trio.fail_after(30):
        response = await http.get(f"/v1/mobiles/{MSISDN}/bonos")
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["code"] == "INTERNAL_ERROR"
    request_id = problem["request_id"]
    assert response.headers["Gestor-Request-Id"] == request_id
    logged = [r for r in caplog.records if request_id in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info is not None
    assert "a bug" not in response.text  # no internals in the answer
