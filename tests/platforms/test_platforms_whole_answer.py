"""Differential test of the hand parser of whole keep-alive answers (``_http._whole_answer``)
against h11, the parser the client falls back to: the same bytes, valid and hostile, through
both, agree.

What "agree" means is what the client does with them. ``_whole_answer`` never refuses: it takes
an answer or declines (None), and a declined answer goes to h11. So for any bytes:

* when ``_whole_answer`` takes them, h11 (the client's own parser, ``_http._parser()``) parses
  them to the same status, headers and body, ends the answer exactly at their end and leaves
  the connection reusable (``their_state`` DONE: no ``Connection: close``, no HTTP/1.0);
* whichever reads the answer arrives in (split at every byte boundary), what the client makes
  of them (``_whole_answer`` on the first read, else h11 over all of them) is what h11 makes of
  the same reads: the same answer, or both refuse, or both still wait for bytes.
"""

from __future__ import annotations

import attrs
import h11
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gestor.platforms._http import _RECEIVE_SIZE, Response, _parser, _whole_answer

LIMIT = 1024  # the largest body taken in these tests

# An outcome of the client's parsing: an answer (and whether the connection stays reusable), a
# refusal, or "waiting" (h11 needs bytes the server has not sent).
REFUSED = "refused"
WAITING = "waiting"


@attrs.frozen
class Parsed:
    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    reusable: bool  # the connection goes back to the pool


Outcome = Parsed | str


def by_h11(chunks: list[bytes], limit: int = LIMIT) -> Outcome:
    """The client's slow path (``HTTPClient._exchange`` without interim answers): h11 over the
    reads, body bounded by ``limit``; the connection is reused only if the answer ended
    cleanly with nothing after it."""
    parser = _parser()
    pending = list(chunks)
    head: h11.Response | None = None
    body = b""
    try:
        while True:
            event = parser.next_event()
            if event is h11.NEED_DATA:
                if not pending:
                    return WAITING
                parser.receive_data(pending.pop(0))
            elif type(event) is h11.Response:
                head = event
            elif type(event) is h11.Data:
                body += event.data
                if len(body) > limit:
                    return REFUSED
            elif type(event) is h11.EndOfMessage:
                break
            else:
                return REFUSED  # ConnectionClosed, an InformationalResponse...
    except h11.RemoteProtocolError:
        return REFUSED
    assert head is not None
    for chunk in pending:  # what the server sent after the answer
        parser.receive_data(chunk)
    reusable = parser.their_state is h11.DONE and not parser.trailing_data[0]
    return Parsed(head.status_code, tuple(head.headers), body, reusable)


def by_client(chunks: list[bytes], limit: int = LIMIT) -> Outcome:
    """The client's parsing: ``_whole_answer`` on the first read, else h11 over all of them."""
    quick = _whole_answer(chunks[0], limit)
    if quick is None:
        return by_h11(chunks, limit)
    return from_response(quick, reusable=True)


def from_response(response: Response, *, reusable: bool) -> Parsed:
    return Parsed(response.status, tuple(response.headers), response.content, reusable)


def answer_only(outcome: Outcome) -> Outcome:
    """The answer without whether the connection is reusable: that depends on which bytes had
    arrived when the answer was complete (the rest of them are the next exchange's)."""
    return attrs.evolve(outcome, reusable=True) if isinstance(outcome, Parsed) else outcome


def check(data: bytes, limit: int = LIMIT) -> None:
    """The two properties of the module docstring, for ``data`` split at every boundary."""
    quick = _whole_answer(data, limit)
    whole = by_h11([data], limit)
    if quick is not None:
        assert whole == from_response(quick, reusable=True), data
    for split in range(1, len(data)):
        chunks = [data[:split], data[split:]]
        assert answer_only(by_client(chunks, limit)) == answer_only(by_h11(chunks, limit)), (
            data,
            split,
        )


# -- hostile heads, generated --------------------------------------------------------------------

_VERSIONS = [b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1.2", b"HTTP/2", b"http/1.1", b"HTTP/1.1 "]
_STATUSES = [b"200", b"201", b"204", b"304", b"404", b"503", b"100", b"199", b"099", b"600",
             b"2000", b"20", b"2x0", b"\xd9\xa2\xd9\xa0\xd9\xa0"]  # the last: Arabic-Indic digits
_NAMES = [b"content-length", b"Content-Length", b"CONTENT-LENGTH", b"transfer-encoding",
          b"connection", b"Connection", b"content-type", b"x-a", b"keep-alive", b"upgrade",
          b"x a", b" x", b"x\x00", b"x\x7f", b"x\xff", b"", b"content-length "]
# bytes that matter to a header value's grammar (controls, whitespace, obs-text, separators)
_ALPHABET = b"a0 \t\x00\x01\x0b\x0c\x1f\x7f\x80\xff,;:\r\n5"
_value = st.one_of(
    st.binary(max_size=8).map(lambda b: bytes(_ALPHABET[x % len(_ALPHABET)] for x in b)),
    st.sampled_from([b"0", b"5", b"007", b"+5", b"-5", b"5 ", b" 5", b"5, 5", b"5,5", b"5, 6",
                     b"0x5", b"\xd9\xa5", b"99999999999999999999999", b"chunked",
                     b"gzip, chunked", b"close", b"keep-alive", b"upgrade", b""]),
)
_header = st.tuples(
    st.sampled_from(_NAMES),
    st.sampled_from([b":", b": ", b":\t", b" : ", b"::"]),
    _value,
    st.sampled_from([b"", b" ", b"\t", b" \t"]),
)
_eol = st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r", b"\n\r"])


_GOOD_HEADER = st.tuples(
    st.sampled_from([b"content-type", b"X-Request-Id", b"date", b"server", b"x-a"]),
    st.sampled_from([b":", b": ", b":\t"]),
    st.sampled_from([b"application/json", b"a b", b"", b"caf\xc3\xa9", b"1", b"a,b;c=d"]),
    st.sampled_from([b"", b" ", b"\t"]),
)
_PARTS = ["eol", "version", "status", "reason", "header", "fold", "length", "end", "trailing"]


@st.composite
def answers(draw: st.DrawFn) -> bytes:
    """One answer, well formed but for at most a few of its parts, drawn hostile."""
    hostile = set(draw(st.lists(st.sampled_from(_PARTS), max_size=2)))

    def pick(part: str, good: st.SearchStrategy[bytes], bad: st.SearchStrategy[bytes]) -> bytes:
        return draw(bad if part in hostile else good)

    eol = pick("eol", st.just(b"\r\n"), _eol)
    version = pick("version", st.just(b"HTTP/1.1"), st.sampled_from(_VERSIONS))
    status = pick("status", st.sampled_from([b"200", b"201", b"404", b"503"]),
                  st.sampled_from(_STATUSES))
    reason = pick("reason", st.sampled_from([b" OK", b" Not Found", b""]),
                  st.sampled_from([b" ", b" Not \x80 Found", b" a\x00b", b" a\tb", b" a\x7fb"]))
    body = draw(st.binary(max_size=24))
    framing = "length"
    if "length" in hostile:
        framing = draw(st.sampled_from(["length", "chunked", "none", "both"]))
    lines = [version + b" " + status + reason]
    if framing in ("length", "both"):
        length = len(body)
        if "length" in hostile:
            length += draw(st.sampled_from([0, -1, 1]))
        lines.append(b"content-length: " + str(max(length, 0)).encode())
    if framing in ("chunked", "both"):
        lines.append(b"transfer-encoding: chunked")
        if body:
            body = f"{len(body):x}".encode() + b"\r\n" + body + b"\r\n"
        body += b"0\r\n\r\n"
    headers = draw(st.lists(_header if "header" in hostile else _GOOD_HEADER, max_size=4))
    for name, colon, value, tail in headers:
        lines.insert(draw(st.integers(1, len(lines))), name + colon + value + tail)
    if "fold" in hostile and len(lines) > 1:  # obsolete line folding of some header
        at = draw(st.integers(1, len(lines) - 1))
        lines[at] += eol + draw(st.sampled_from([b" folded", b"\tfolded", b" "]))
    end = pick("end", st.just(eol + eol), st.sampled_from([b"\r\n\r\n", b"\n\n", b"\r\n\n"]))
    trailing = pick("trailing", st.just(b""),
                    st.sampled_from([b"HTTP/1.1 200 OK\r\n", b"x", b"\r\n"]))
    return eol.join(lines) + end + body + trailing


_PLAIN = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n"
          b'{"ok":true}')


@settings(max_examples=1000, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(answers())
@example(_PLAIN)
def test_generated_answers_agree_with_h11(data: bytes) -> None:
    check(data)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_agree_with_h11(data: bytes) -> None:
    check(data)


@pytest.mark.parametrize("data", [
    _PLAIN,
    _PLAIN.replace(b"200 OK", b"200"),  # no reason phrase
    _PLAIN.replace(b"200 OK", b"200 "),  # an empty one
    _PLAIN.replace(b"content-type: application/json", b"content-type:   application/json \t"),
    _PLAIN.replace(b"content-type: application/json", b"x-empty:"),
    _PLAIN.replace(b"application/json", b"caf\xc3\xa9"),  # obs-text
    _PLAIN.replace(b"content-length: 11", b"content-length: 011"),
    _PLAIN.replace(b"content-length: 11", b"content-length: 11, 11"),  # h11 takes the list
    _PLAIN.replace(b"content-length: 11", b"content-length: 11\r\ncontent-length: 11"),
    _PLAIN.replace(b"content-length: 11", b"content-length: 11\r\ncontent-length: 12"),
    _PLAIN.replace(b"\r\n", b"\n"),  # bare LF line ends: h11 takes them
    _PLAIN.replace(b"content-type: application/json", b"content-type: a\r\n b"),  # folding
    _PLAIN.replace(b"content-type: application/json", b"content-type: a\r\n\tb"),
    _PLAIN.replace(b"content-type:", b"connection: keep-alive\r\ncontent-type:"),
    _PLAIN.replace(b"content-type:", b"transfer-encoding: chunked\r\ncontent-type:"),
    _PLAIN.replace(b"200 OK", b"204 No Content"),  # 204 and 304 never have a body
    _PLAIN.replace(b"200 OK", b"304 Not Modified"),
    _PLAIN.replace(b"200 OK", b"204 No Content").replace(b": 11", b": 0")[:-11],
    _PLAIN.replace(b"200 OK", b"101 Switching Protocols"),
    _PLAIN + _PLAIN,  # two answers in one read
])
def test_chosen_answers_agree_with_h11(data: bytes) -> None:
    check(data)


@pytest.mark.parametrize("size", [1000, 60_000, 65_400, 65_536, 70_000])
def test_huge_heads_agree_with_h11(size: int) -> None:
    """Reads of at most ``_RECEIVE_SIZE`` bytes, as the client's: h11 refuses a head that is
    still incomplete past 64 KiB, and ``_whole_answer`` never sees more than one read."""
    data = _PLAIN.replace(b"content-type:", b"x-big: " + b"a" * size + b"\r\ncontent-type:")
    quick = _whole_answer(data[:_RECEIVE_SIZE], LIMIT)
    if quick is not None:
        assert by_h11([data]) == from_response(quick, reusable=True)
    for split in (1, size // 2, size, len(data) - 12, len(data) - 1, _RECEIVE_SIZE):
        if split > _RECEIVE_SIZE:
            continue  # a first read is never longer
        chunks = [data[:split]] + [
            data[at : at + _RECEIVE_SIZE] for at in range(split, len(data), _RECEIVE_SIZE)
        ]
        assert answer_only(by_client(chunks)) == answer_only(by_h11(chunks))


@pytest.mark.parametrize("status", [b"204 No Content", b"304 Not Modified"])
def test_an_answer_without_a_body_announcing_one_is_left_to_h11(status: bytes) -> None:
    """Found by this test: ``_whole_answer`` took the bytes after a 204 or 304 head as its body
    (and kept the connection); h11 gives such an answer no body, whatever its Content-Length,
    and the bytes after it start the next answer (the client then closes the connection)."""
    data = _PLAIN.replace(b"200 OK", status)
    assert _whole_answer(data, LIMIT) is None
    assert by_h11([data]) == Parsed(
        int(status[:3]), ((b"content-type", b"application/json"), (b"content-length", b"11")),
        b"", reusable=False,
    )
    empty = data.replace(b"content-length: 11", b"content-length: 0")[:-11]
    assert _whole_answer(empty, LIMIT) is not None  # announcing none, it is taken as before


@pytest.mark.parametrize("limit", [0, 10, 11, 12])
def test_the_body_limit_agrees_with_h11(limit: int) -> None:
    check(_PLAIN, limit)
