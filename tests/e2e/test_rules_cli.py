"""`gestor rules check|dry-run|push` as a user runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio

from tests.e2e._proc import ROOT, clean_env
from tests.e2e.conftest import ADMIN_KEY
from tests.ruletext import SEED, promo, with_first_operation

pytestmark = pytest.mark.e2e

BROKEN = SEED + '''
[[validation]]
id = "broken_rule"
when = "customer.balance >"
code = "X"
message = "x"
'''
SMS_PROMO = with_first_operation(promo("SMS_200_30D", 1000))


def gestor(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gestor", *args], cwd=ROOT, env=clean_env(**env),
                          capture_output=True, text=True, timeout=60)


def test_check_names_the_bad_rule(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text(SEED)
    bad.write_text(BROKEN)
    ok = gestor("rules", "check", str(good))
    assert ok.returncode == 0 and "OK" in ok.stdout
    refused = gestor("rules", "check", str(bad))
    assert refused.returncode == 1 and "broken_rule" in refused.stderr


async def test_dry_run_then_push_and_activate(server: str, tmp_path: Path) -> None:
    rules = tmp_path / "promo.toml"
    rules.write_text(SMS_PROMO)
    with trio.fail_after(60):
        dry = await trio.to_thread.run_sync(lambda: gestor(
            "rules", "dry-run", str(rules), "--url", server, "--msisdn", "5491100000071",
            "--bono", "SMS_200_30D", GESTOR_ADMIN_KEY=ADMIN_KEY))
        assert dry.returncode == 0, dry.stderr
        assert '"changed": true' in dry.stdout
        no_key = await trio.to_thread.run_sync(lambda: gestor(
            "rules", "push", str(rules), "--url", server))
        assert no_key.returncode == 2
        pushed = await trio.to_thread.run_sync(lambda: gestor(
            "rules", "push", str(rules), "--url", server, "--activate",
            GESTOR_ADMIN_KEY=ADMIN_KEY))
        assert pushed.returncode == 0, pushed.stderr
        assert "is active" in pushed.stdout
        async with httpx.AsyncClient(base_url=server) as http:
            bonos = (await http.get("/v1/mobiles/5491100000071/bonos")).json()
            assert {b["id"]: b["price"] for b in bonos["bonos"]}["SMS_200_30D"] == 1000
            # Put the seed back for the other tests of this module's server.
            admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
            assert (await http.post("/v1/admin/rules/1/activate", headers=admin)).status_code == 200


def test_push_to_a_server_that_is_not_there_says_so(tmp_path: Path) -> None:
    import socket

    rules = tmp_path / "promo.toml"
    rules.write_text(SMS_PROMO)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    pushed = gestor("rules", "push", str(rules), "--url", url, GESTOR_ADMIN_KEY=ADMIN_KEY)
    assert pushed.returncode == 1
    assert pushed.stderr.startswith(f"gestor rules: cannot connect to 127.0.0.1:{url[17:]}")
    assert pushed.stderr.rstrip().endswith("(no answer)")
    assert ADMIN_KEY not in pushed.stderr


def test_a_key_no_header_can_carry_is_refused_without_quoting_it(tmp_path: Path) -> None:
    rules = tmp_path / "promo.toml"
    rules.write_text(SMS_PROMO)
    pushed = gestor("rules", "push", str(rules), "--url", "http://127.0.0.1:9",
                    GESTOR_ADMIN_KEY="secret\x01part")
    assert pushed.returncode == 1
    assert "holds characters an HTTP header cannot carry" in pushed.stderr
    assert "secret" not in pushed.stderr
