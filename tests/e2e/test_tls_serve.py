"""`gestor serve --certfile --keyfile` with a throw-away certificate (`trustme`): HTTPS and WSS on
the one port, with one worker and with two; plain HTTP to it answered 400 and closed; the
keep-alive timeout, `Connection: close` and a client that never handshakes handled as over
TCP; and every problem with the certificate or key refused at start with one line."""

from __future__ import annotations

import contextlib
import json
import shutil
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
from trio_websocket import open_websocket_url

from gestor.store import open_bridge
from gestor.store._alarms import ALARM_CHANNEL
from tests.e2e._proc import ROOT, clean_env, free_port, start, stop
from tests.tlscerts import Certificates, make_certificates

pytestmark = pytest.mark.e2e

KEEP_ALIVE = 1.0
ADMIN_KEY = "e2e-tls-admin-key-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@attrs.frozen
class TLSServer:
    port: int
    announced: str  # what follows "gestor listening on "
    certificates: Certificates
    database_url: str

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, verify=self.certificates.client_context(),
                                 timeout=15)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


def short_keep_alive_config(config_dir: Path, target: Path) -> Path:
    shutil.copytree(config_dir, target)
    toml = target / "gestor.toml"
    text = toml.read_text(encoding="utf-8")
    assert "keep_alive_timeout = 20.0" in text
    toml.write_text(text.replace("keep_alive_timeout = 20.0",
                                 f"keep_alive_timeout = {KEEP_ALIVE}"), encoding="utf-8")
    return target


@contextlib.contextmanager
def serving(workers: int, certificates: Certificates, platforms_url: str, database_url: str,
            config_dir: Path, tmp: Path) -> Iterator[TLSServer]:
    port = free_port()
    proc, announced = start(
        ["serve", "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
         "--certfile", str(certificates.certfile), "--keyfile", str(certificates.keyfile),
         "--platforms", platforms_url, "--data-dir", str(tmp / "data")],
        clean_env(GESTOR_DATABASE_URL=database_url, GESTOR_ADMIN_KEY=ADMIN_KEY,
                  GESTOR_CONFIG_DIR=str(short_keep_alive_config(config_dir, tmp / "config"))),
        "gestor listening on ",
    )
    try:
        yield TLSServer(port, announced, certificates, database_url)
    finally:
        assert stop(proc) == 0


@pytest.fixture(scope="module")
def tls_server(certificates: Certificates, platforms_url: str, e2e_database: str,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSServer]:
    with serving(1, certificates, platforms_url, e2e_database, ROOT / "config",
                 tmp_path_factory.mktemp("one")) as server:
        yield server


async def test_readyz_and_a_purchase_over_https(tls_server: TLSServer) -> None:
    # (then the note that, without channel keys, channel calls are open to this machine only)
    assert tls_server.announced.startswith(f"https://127.0.0.1:{tls_server.port} (")
    with trio.fail_after(60):
        async with tls_server.client() as client:
            ready = await client.get("/readyz")
            assert ready.status_code == 200, ready.text
            bought = await client.post(
                "/v1/purchases", json={"msisdn": "5491100000071", "bono_id": "DATA_2GB_7D"},
                headers={"Idempotency-Key": "tls-1", "Prefer": "wait=20"})
            assert bought.status_code == 200, bought.text
            assert bought.json()["state"] == "completed"
            status = await client.get(f"/v1/transactions/{bought.json()['id']}")
            assert status.status_code == 200 and status.json()["state"] == "completed"
            # a client that does not trust the certificate's authority gets no answer
            async with httpx.AsyncClient(base_url=tls_server.url) as untrusting:
                with pytest.raises(httpx.ConnectError) as refused:
                    await untrusting.get("/readyz")
    causes: list[BaseException] = []
    cause: BaseException | None = refused.value
    while cause is not None:
        causes.append(cause)
        cause = cause.__cause__ or cause.__context__
    assert any(isinstance(c, ssl.SSLCertVerificationError) for c in causes), causes


async def test_the_alarm_feed_over_wss_receives_a_live_alarm(tls_server: TLSServer) -> None:
    async def last_id(conn: Any) -> int:
        return int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM alarms"))

    async def raise_one(conn: Any) -> int:
        # as a worker raises one: stored, then NOTIFY every worker
        alarm_id = int(await conn.fetchval(
            "INSERT INTO alarms (kind, severity, message) VALUES ('stuck', 'warning', 'tls e2e')"
            " RETURNING id"))
        await conn.execute("SELECT pg_notify($1, $2)", ALARM_CHANNEL, str(alarm_id))
        return alarm_id

    with trio.fail_after(60):
        async with open_bridge(tls_server.database_url, min_size=1, max_size=1) as bridge:
            since = await bridge.run(last_id)
            url = f"wss://127.0.0.1:{tls_server.port}/v1/alarms?since={since}"
            async with open_websocket_url(
                    url, ssl_context=tls_server.certificates.client_context(),
                    extra_headers=[(b"authorization", ADMIN["Authorization"].encode())]) as ws:
                # raised once subscribed: replayed or sent live, it comes once (no gap)
                alarm_id = await bridge.run(raise_one)
                message = json.loads(await ws.get_message())
    assert (message["id"], message["kind"], message["message"]) == (alarm_id, "stuck", "tls e2e")


async def read_to_eof(stream: trio.SocketStream | trio.SSLStream[trio.SocketStream]) -> bytes:
    data = bytearray()
    while chunk := await stream.receive_some(65536):
        data += chunk
    return bytes(data)


async def test_rules_dry_run_over_https_trusts_ssl_cert_file(tls_server: TLSServer,
                                                             tmp_path: Path) -> None:
    """`gestor rules` (Gestor's own HTTP client) checks the server's certificate against the
    system's trust store, which SSL_CERT_FILE replaces."""
    rules = tmp_path / "rules.toml"
    rules.write_text((ROOT / "config" / "rules.toml").read_text(encoding="utf-8"))

    def dry_run(**env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gestor", "rules", "dry-run", str(rules), "--url",
             tls_server.url, "--msisdn", "5491100000071"],
            cwd=ROOT, env=clean_env(GESTOR_ADMIN_KEY=ADMIN_KEY, **env), capture_output=True,
            text=True, timeout=60)

    with trio.fail_after(120):
        trusted = await trio.to_thread.run_sync(
            lambda: dry_run(SSL_CERT_FILE=str(tls_server.certificates.cafile)))
        assert trusted.returncode == 0, trusted.stderr
        assert [r["msisdn"] for r in json.loads(trusted.stdout)["results"]] == ["5491100000071"]
        stranger = await trio.to_thread.run_sync(dry_run)
        assert stranger.returncode == 1
        assert "CERTIFICATE_VERIFY_FAILED" in stranger.stderr, stranger.stderr


async def test_plain_http_to_the_tls_port_gets_400_and_is_closed(tls_server: TLSServer) -> None:
    with trio.fail_after(30):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{tls_server.port}") as plain:
            answer = await plain.get("/readyz")
        assert answer.status_code == 400
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["code"] == "TLS_REQUIRED"
        stream = await trio.open_tcp_stream("127.0.0.1", tls_server.port)
        await stream.send_all(b"GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n")
        data = await read_to_eof(stream)  # closed by the server after its answer
        assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")
        await stream.aclose()


async def test_connection_close_and_idle_connections_over_tls(tls_server: TLSServer) -> None:
    context = tls_server.certificates.client_context()
    with trio.fail_after(60):
        stream = await trio.open_ssl_over_tcp_stream("127.0.0.1", tls_server.port,
                                                     ssl_context=context)
        await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        with trio.fail_after(2):
            data = await read_to_eof(stream)  # a close_notify, then the end
        assert data.startswith(b"HTTP/1.1 200 \r\n") and data.endswith(b'{"status":"ok"}')

        for request in (b"", b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"):
            stream = await trio.open_ssl_over_tcp_stream("127.0.0.1", tls_server.port,
                                                         ssl_context=context)
            await stream.do_handshake()
            await stream.send_all(request)
            begun = trio.current_time()
            data = await read_to_eof(stream)
            waited = trio.current_time() - begun
            assert data.endswith(b'{"status":"ok"}') if request else data == b""
            assert KEEP_ALIVE * 0.9 <= waited < KEEP_ALIVE + 5, waited


async def test_a_client_that_never_handshakes_is_dropped_after_the_keep_alive_timeout(
        tls_server: TLSServer) -> None:
    with trio.fail_after(60):
        silent = await trio.open_tcp_stream("127.0.0.1", tls_server.port)
        begun = trio.current_time()
        assert await read_to_eof(silent) == b""
        waited = trio.current_time() - begun
        assert KEEP_ALIVE * 0.9 <= waited < KEEP_ALIVE + 5, waited
        await silent.aclose()


async def test_two_workers_serve_https(certificates: Certificates, platforms_url: str,
                                       database_url: str, config_dir: Path,
                                       tmp_path: Path) -> None:
    with serving(2, certificates, platforms_url, database_url, config_dir, tmp_path) as server:
        assert server.announced.startswith(f"https://127.0.0.1:{server.port} (2 workers)")
        with trio.fail_after(60):
            workers: set[str] = set()
            while len(workers) < 2:  # new connections, which the kernel spreads over both
                async with server.client() as client:
                    ready = await client.get("/readyz")
                assert ready.status_code == 200, ready.text
                workers.add(ready.headers["Gestor-Worker"])


# -- start-up errors ---------------------------------------------------------------------------
def serve_refused(args: list[str], env: dict[str, str], config: Path) -> str:
    """Run `gestor serve ARGS`, which must refuse to start: its one line of error."""
    done = subprocess.run(
        [sys.executable, "-m", "gestor", "serve", "--bind", f"127.0.0.1:{free_port()}",
         "--config", str(config), *args],
        cwd=ROOT, env=clean_env(**env), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert done.stdout == ""
    return lines[0]


@pytest.fixture
def tls_files(tmp_path: Path) -> Certificates:
    return make_certificates(tmp_path / "tls")


def test_start_up_refusals(tls_files: Certificates, config_dir: Path, tmp_path: Path) -> None:
    cert, key = str(tls_files.certfile), str(tls_files.keyfile)
    missing = str(tmp_path / "missing.pem")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnonsense\n-----END CERTIFICATE-----\n")
    other = make_certificates(tmp_path / "other")
    config = tmp_path / "config"
    shutil.copytree(config_dir, config)

    assert serve_refused(["--certfile", missing, "--keyfile", key], {}, config) == (
        f"gestor: cannot read the TLS certificate: no such file or directory ({missing})")
    assert serve_refused(["--certfile", cert, "--keyfile", str(tmp_path)], {}, config) == (
        f"gestor: cannot read the TLS key: is a directory ({tmp_path})")
    assert serve_refused(["--certfile", str(garbage), "--keyfile", key], {}, config) == (
        f"gestor: the TLS certificate file holds no PEM certificate ({garbage})")
    assert serve_refused(["--certfile", cert, "--keyfile", str(garbage)], {}, config) == (
        f"gestor: the TLS key file holds no PEM private key ({garbage})")
    assert serve_refused([], {"GESTOR_CERTFILE": cert, "GESTOR_KEYFILE": str(other.keyfile)},
                         config) == ("gestor: the TLS key does not match the certificate "
                                     f"({other.keyfile}, certificate {cert})")
    assert serve_refused(["--certfile", cert], {}, config) == (
        "gestor: TLS needs both server.certfile and server.keyfile, only certfile is set; give "
        "keyfile with --keyfile, GESTOR_KEYFILE or [server] keyfile (--certfile)")
    assert serve_refused(["--workers", "2"], {"GESTOR_KEYFILE": key}, config) == (
        "gestor: TLS needs both server.certfile and server.keyfile, only keyfile is set; give "
        "certfile with --certfile, GESTOR_CERTFILE or [server] certfile (GESTOR_KEYFILE)")
    toml = config / "gestor.toml"
    text = toml.read_text(encoding="utf-8")
    toml.write_text(text.replace('certfile = ""', f'certfile = "{cert}"'), encoding="utf-8")
    line = text[:text.index('certfile = ""')].count("\n") + 1
    assert serve_refused([], {}, config) == (
        "gestor: TLS needs both server.certfile and server.keyfile, only certfile is set; give "
        f"keyfile with --keyfile, GESTOR_KEYFILE or [server] keyfile ({toml}, line {line})")
