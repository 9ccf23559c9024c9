"""End to end: `gestor keys` as a subprocess, `gestor serve` refusing a non-loopback address
without keys (and saying when it serves channel calls open on loopback), and a revocation
reaching both workers of `gestor serve --workers 2` within a second. The servers' logs (at
DEBUG), the CLI's output other than the key it prints and every response: no raw key."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest
import trio

from tests.e2e._proc import ROOT, clean_env, free_port, start, stop

pytestmark = pytest.mark.e2e

ADMIN_KEY = "e2e-keys-admin-key-0123456789"


async def gestor(args: Sequence[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = await trio.run_process([sys.executable, "-m", "gestor", *args], cwd=ROOT, env=env,
                                  capture_stdout=True, capture_stderr=True, check=False)
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(),
                                       done.stderr.decode())


async def test_keys_cli_and_the_refusal_to_serve_elsewhere_without_keys(
    database_url: str, platforms_url: str, tmp_path: Path
) -> None:
    env = clean_env(GESTOR_DATABASE_URL=database_url, GESTOR_ADMIN_KEY=ADMIN_KEY)
    port = free_port()
    serve = ["serve", "--bind", f"0.0.0.0:{port}", "--platforms", platforms_url,
             "--data-dir", str(tmp_path)]
    with trio.fail_after(180):
        refused = await gestor(serve, env)
        assert refused.returncode == 2
        assert "listening" not in refused.stdout
        lines = refused.stderr.strip().splitlines()
        assert lines[-1].startswith("gestor: no channel keys: refusing to serve channel calls")
        assert lines[-1].endswith(f"(0.0.0.0:{port})")
        # An operator key is not a channel key: still refused.
        made = await gestor(["keys", "create", "--name", "alice", "--role", "admin"], env)
        assert made.returncode == 0, made.stderr
        assert (await gestor(serve, env)).returncode == 2
        # Bad usage and unknown keys are one line each.
        for args, code in ((["keys", "create", "--name", "gw"], 2),
                           (["keys", "revoke", "0123456789ab"], 1),
                           (["keys", "rotate", "0123456789ab"], 1)):
            done = await gestor(args, env)
            assert done.returncode == code, done
            assert len(done.stderr.strip().splitlines()) == 1
            assert done.stderr.startswith("gestor: ")
        made = await gestor(["keys", "create", "--name", "ussd-gw", "--channel", "ussd",
                             "--msisdn-prefix", "549110", "--json"], env)
        assert made.returncode == 0, made.stderr
        created = json.loads(made.stdout)
        raw = created["key"]
        assert raw.startswith(f"gk_{created['id']}_")
        assert (created["kind"], created["channels"], created["calls"], created["read"]) == (
            "channel", ["ussd"], ["list", "purchase", "status"], "own")
        again = await gestor(["keys", "create", "--name", "ussd-gw", "--channel", "ussd"], env)
        assert again.returncode == 1 and "rotate it" in again.stderr
        listed = await gestor(["keys", "list", "--json"], env)
        assert [k["name"] for k in json.loads(listed.stdout)["keys"]] == ["alice", "ussd-gw"]
        assert raw not in listed.stdout and raw[-43:] not in listed.stdout
        plain = await gestor(["keys", "list"], env)
        assert created["id"] in plain.stdout and raw[-43:] not in plain.stdout
        # With a channel key it starts on 0.0.0.0 (traffic only to 127.0.0.1), no open note.
        log = (tmp_path / "serve.log").open("w")
        proc, rest = start(serve, env, "gestor listening on ", stderr=log)
        try:
            assert "open" not in rest
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}",
                                         timeout=30) as http:
                r = await http.get("/v1/mobiles/5491100000001/bonos")
                assert r.status_code == 401
                r = await http.get("/v1/mobiles/5491100000001/bonos",
                                   headers={"Authorization": f"Bearer {raw}"})
                assert r.status_code == 200 and raw not in r.text
        finally:
            assert stop(proc) == 0
            log.close()
        assert raw[-43:] not in (tmp_path / "serve.log").read_text()


async def test_loopback_without_keys_says_it_is_open(
    database_url: str, platforms_url: str, tmp_path: Path
) -> None:
    port = free_port()
    with trio.fail_after(120):
        proc, rest = start(["serve", "--bind", f"127.0.0.1:{port}", "--platforms",
                            platforms_url, "--data-dir", str(tmp_path)],
                           clean_env(GESTOR_DATABASE_URL=database_url), "gestor listening on ")
        try:
            assert rest == (f"http://127.0.0.1:{port} (no channel keys: channel calls open to "
                            "this machine only)")
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}",
                                         timeout=30) as http:
                r = await http.get("/v1/mobiles/5491100000001/bonos")
                assert r.status_code == 200
        finally:
            assert stop(proc) == 0


async def test_a_revocation_reaches_both_workers_within_a_second(
    database_url: str, platforms_url: str, tmp_path: Path
) -> None:
    env = clean_env(GESTOR_DATABASE_URL=database_url, GESTOR_ADMIN_KEY=ADMIN_KEY)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with trio.fail_after(240):
        made = await gestor(["keys", "create", "--name", "app", "--channel", "app"], env)
        assert made.returncode == 0, made.stderr
        raw = made.stdout.strip()
        key_id = raw.split("_")[1]
        assert raw not in made.stderr
        log_path = tmp_path / "serve.log"
        log = log_path.open("w")
        proc, _ = start(["serve", "--bind", f"127.0.0.1:{port}", "--workers", "2",
                         "--platforms", platforms_url, "--data-dir", str(tmp_path)],
                        {**env, "GESTOR_LOG_LEVEL": "DEBUG"}, "gestor listening on ",
                        stderr=log)
        bodies: list[str] = []

        async def fresh(token: str) -> tuple[str, int]:
            """One request on a new connection (either worker may take it)."""
            async with httpx.AsyncClient(base_url=base, timeout=30) as http:
                r = await http.get("/v1/mobiles/5491100000001/bonos?channel=app",
                                   headers={"Authorization": f"Bearer {token}"})
                bodies.append(f"{r.headers!r} {r.text}")
                return r.headers["Gestor-Worker"], r.status_code

        try:
            accepted: set[str] = set()
            while len(accepted) < 2:  # each worker has the key cached
                worker, status = await fresh(raw)
                assert status == 200
                accepted.add(worker)
            revoked = await gestor(["keys", "revoke", key_id], env)
            assert revoked.returncode == 0, revoked.stderr
            began = trio.current_time()
            refused: set[str] = set()
            with trio.fail_after(1):
                while refused != accepted:
                    worker, status = await fresh(raw)
                    if status == 401:
                        refused.add(worker)
                    else:  # a worker that refused once never accepts it again
                        assert worker not in refused
            assert trio.current_time() - began < 1.0
        finally:
            assert stop(proc) == 0
            log.close()
        logs = log_path.read_text()
        assert "\"level\":\"DEBUG\"" in logs  # the log was at DEBUG (JSON: not a terminal)
        for text in (logs, *bodies, revoked.stdout, revoked.stderr):
            assert raw[-43:] not in text
