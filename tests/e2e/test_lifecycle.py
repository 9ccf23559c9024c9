"""End to end: how `gestor serve` stops and fails to start, as a terminal sees it.

Each server runs in a session of its own (`start_new_session=True`), so the test can signal its
whole process group as a terminal's Ctrl-C does, and can tell afterwards that nothing it
started (workers, simulator, embedded PostgreSQL) is left running.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import trio

from tests.e2e._proc import ROOT, clean_env, free_port, start, stop

pytestmark = pytest.mark.e2e

CONFIG = ROOT / "config"
ONE_LINE = re.compile(r"gestor: [^\n]+ \([^\n]+\)")


def _processes() -> list[tuple[int, int, str]]:
    """(pid, session id, command line) of every process."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] == "Z":  # a zombie has exited; only its parent's wait is missing
            continue
        found.append((int(entry.name), int(fields[3]), cmdline))
    return found


def leftovers(session: int, mark: Path, within: float = 15.0) -> list[str]:
    """Processes still in `session`, or whose command line names `mark` (the simulator and the
    embedded PostgreSQL run in sessions of their own, with the data directory in theirs),
    after giving them `within` seconds to go (multiprocessing's resource tracker leaves when
    it sees its parent's pipe close, a moment after the parent)."""
    deadline = time.monotonic() + within
    while True:
        left = [f"{pid}: {cmd}" for pid, sid, cmd in _processes()
                if pid != os.getpid() and (sid == session or str(mark) in cmd)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def config_copy(tmp_path: Path) -> Path:
    target = tmp_path / "config"
    shutil.copytree(CONFIG, target)
    return target


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def line_of(path: Path, needle: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), start=1)
                if needle in line)


def serve_in_session(args: list[str], env: dict[str, str], stderr: Path
                     ) -> subprocess.Popen[str]:
    """`gestor serve ARGS` in a session of its own (its pid is its group's id), logging to
    `stderr`; returned once it listens."""
    with open(stderr, "w") as err:
        proc, _ = start(["serve", *args], env, "gestor listening on ", timeout=180,
                        start_new_session=True, stderr=err)
    return proc


# -- a clean stop ---------------------------------------------------------------------------------
def _simulator_url(stderr: Path) -> str:
    match = re.search(r"platform simulator \(pid \d+\) at ([^\s\"]+)", stderr.read_text())
    assert match, stderr.read_text()
    return match.group(1)


@pytest.mark.parametrize(("sig", "workers"), [
    (signal.SIGINT, 1), (signal.SIGTERM, 1), (signal.SIGINT, 2),
], ids=["ctrl-c", "sigterm", "ctrl-c-2-workers"])
async def test_group_signal_lets_the_purchase_in_flight_complete(
    tmp_path: Path, sig: signal.Signals, workers: int
) -> None:
    """The built-in simulator and the embedded PostgreSQL outlive the drain: a purchase
    charged when the signal reaches the whole group is provisioned and completed; then
    everything stops."""
    data = tmp_path / "data"
    port = free_port()
    msisdn = "5491100000071"
    proc = serve_in_session(["--bind", f"127.0.0.1:{port}", "--data-dir", str(data),
                             "--workers", str(workers)], clean_env(), tmp_path / "stderr")
    try:
        sim_url = _simulator_url(tmp_path / "stderr")
        with trio.fail_after(120):
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}",
                                         timeout=60) as http, \
                    httpx.AsyncClient(base_url=sim_url, timeout=10) as sim:
                slow = {"prov": {"latency_ms": 1500}}  # under the 2 s client timeout
                assert (await sim.put("/control/faults", json=slow)).status_code == 200
                answer: dict[str, httpx.Response] = {}
                async with trio.open_nursery() as nursery:
                    async def purchase() -> None:
                        answer["r"] = await http.post(
                            "/v1/purchases", json={"msisdn": msisdn, "bono_id": "SMS_200_30D"},
                            headers={"Idempotency-Key": f"lifecycle-{sig.name}",
                                     "Prefer": "wait=25"})

                    nursery.start_soon(purchase)
                    while True:  # charged: the debit is done, provisioning under way
                        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}",
                                                     timeout=10) as probe:
                            r = await probe.get(f"/v1/mobiles/{msisdn}/transactions",
                                                params={"state": "charged"})
                        if r.json()["transactions"]:
                            break
                        await trio.sleep(0.05)
                    os.killpg(proc.pid, sig)  # what a terminal does on Ctrl-C
                response = answer["r"]
                assert response.status_code == 200, response.text
                tx = response.json()
                assert tx["state"] == "completed"
                code = await trio.to_thread.run_sync(proc.wait, 60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        stop(proc)
    assert code == 0, (tmp_path / "stderr").read_text()[-3000:]
    assert await trio.to_thread.run_sync(leftovers, proc.pid, data) == []
    assert not (data / "pg" / "postmaster.pid").exists()  # the embedded server stopped
    log = (tmp_path / "stderr").read_text()
    assert "provision_unknown" not in log and "Traceback" not in log
    # The simulator kept its journal: the debit and the provisioning both happened.
    sim_proc, url = start(["simulate", "--bind", "127.0.0.1:0", "--state-dir",
                           str(data / "simulator")], clean_env(), "listening on ")
    try:
        with trio.fail_after(30):
            async with httpx.AsyncClient(base_url=url) as sim:
                debit = await sim.get(f"/ocs/debits/{tx['id']}")
                assert debit.status_code == 200 and debit.json()["msisdn"] == msisdn
                bundle = await sim.get(f"/prov/bundles/{tx['id']}")
                assert bundle.status_code == 200, bundle.text
    finally:
        stop(sim_proc)


async def test_simulator_stops_when_its_parent_dies(tmp_path: Path, database_url: str) -> None:
    """Killed outright (no drain possible), `gestor serve` leaves no simulator behind: it
    stops when its standard input, a pipe from the server, closes."""
    port = free_port()
    database = tmp_path / "unused"
    proc = serve_in_session(["--bind", f"127.0.0.1:{port}", "--data-dir", str(database)],
                            clean_env(GESTOR_DATABASE_URL=database_url), tmp_path / "stderr")
    sim_url = _simulator_url(tmp_path / "stderr")
    os.killpg(proc.pid, signal.SIGKILL)
    stop(proc)
    assert await trio.to_thread.run_sync(leftovers, proc.pid, database) == []
    with trio.fail_after(30):
        with pytest.raises(httpx.TransportError):
            async with httpx.AsyncClient(base_url=sim_url) as sim:
                await sim.get("/healthz")


def test_sigterm_during_start_up_stops_what_was_started(tmp_path: Path) -> None:
    """A SIGTERM to the group while the database is up but the server is not yet: the start-up
    unwinds (the embedded PostgreSQL it started stops) instead of leaving it behind."""
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gestor", "serve", "--data-dir", str(data),
         "--bind", f"127.0.0.1:{free_port()}"],
        cwd=ROOT, env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "database: embedded PostgreSQL" in line:
                os.killpg(proc.pid, signal.SIGTERM)
                break
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode in (0, 130)  # 0 if it was already serving when the signal came
    assert leftovers(proc.pid, data) == []
    assert not (data / "pg" / "postmaster.pid").exists()


# -- start-up errors ------------------------------------------------------------------------------
def serve_fails(tmp_path: Path, *args: str, env: dict[str, str] | None = None
                ) -> tuple[int, str, str]:
    """Run `gestor serve ARGS` (in a session of its own) to its end; (exit status, the one
    line of stderr, stdout). Asserts that stderr is exactly one `gestor: <what> (<where>)`
    line and that nothing it started is left."""
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gestor", "serve", "--data-dir", str(data), *args],
        cwd=ROOT, env=env or clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert ONE_LINE.fullmatch(lines[0]), lines[0]
    assert proc.returncode != 0
    assert "listening" not in stdout and "Running on" not in stderr
    assert leftovers(proc.pid, data) == []
    assert not (data / "pg" / "postmaster.pid").exists()
    return proc.returncode, lines[0], stdout


@pytest.mark.parametrize("workers", [1, 2])
def test_port_in_use(tmp_path: Path, workers: int) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        _, line, _ = serve_fails(tmp_path, "--bind", f"127.0.0.1:{port}",
                                 "--workers", str(workers))
    assert line == f"gestor: cannot listen: address already in use (127.0.0.1:{port})"


def test_database_unreachable(tmp_path: Path) -> None:
    port = free_port()
    url = f"postgresql://gestor:secret@127.0.0.1:{port}/gestor"
    _, line, _ = serve_fails(tmp_path, "--bind", f"127.0.0.1:{free_port()}",
                             env=clean_env(GESTOR_DATABASE_URL=url))
    assert line.startswith("gestor: cannot connect to the database: ")
    assert line.endswith(f"(postgresql://127.0.0.1:{port}/gestor)")
    assert "secret" not in line


def test_misspelt_key_in_gestor_toml(tmp_path: Path) -> None:
    config = config_copy(tmp_path)
    edit(config / "gestor.toml", "max_request_bytes = 16384", "max_requst_bytes = 16384")
    line_no = line_of(config / "gestor.toml", "max_requst_bytes")
    code, line, _ = serve_fails(tmp_path, "--config", str(config))
    assert code == 2
    assert line == (f"gestor: unknown key 'max_requst_bytes' in [server] "
                    f"({config / 'gestor.toml'}, line {line_no})")


def test_pool_size_out_of_range(tmp_path: Path) -> None:
    config = config_copy(tmp_path)
    edit(config / "gestor.toml", "pool_size = 10", "pool_size = -3")
    line_no = line_of(config / "gestor.toml", "pool_size")
    code, line, _ = serve_fails(tmp_path, "--config", str(config))
    assert code == 2
    assert line == (f"gestor: database.pool_size must be at least 1, got -3 "
                    f"({config / 'gestor.toml'}, line {line_no})")


@pytest.mark.parametrize(("old", "new", "needle", "message"), [
    ('kind = "voice"', "kind = voice", "kind = voice", "bonos.toml: not valid TOML: "
     "Invalid value"),
    ("price = 60000", "price = -5", "price = -5", "bono catalogue refused: bono #2 "
     "'DATA_2GB_7D': price: must be >= 0, got -5"),
    ("sms = 200", "sms = 200\nsmss = 1", "smss = 1", "bono catalogue refused: bono #5 "
     "'SMS_200_30D': smss: unknown field"),
], ids=["syntax", "semantic", "unknown-key"])
def test_broken_bonos_toml(tmp_path: Path, old: str, new: str, needle: str,
                           message: str) -> None:
    config = config_copy(tmp_path)
    bonos = config / "bonos.toml"
    edit(bonos, old, new)
    code, line, _ = serve_fails(tmp_path, "--config", str(config))
    assert code == 2
    assert line.startswith(f"gestor: {message}")
    assert f"({bonos}, line {line_of(bonos, needle)}" in line


@pytest.mark.parametrize(("old", "new", "needle", "message"), [
    ('profile_id = "VIP"', 'profile_id = "VIP', 'profile_id = "VIP', "rules.toml: not valid "
     "TOML: "),
    ('profile_id = "VIP"', 'profile_id = "VIP"\nprofile = "X"', 'profile = "X"',
     "seed rule set refused: profiling[vip].profile: unknown field"),
    ('when = \'customer.segment == "vip"\'', 'when = \'customr.segment == "vip"\'',
     "customr.segment", "seed rule set refused: profiling[vip].when: "),
], ids=["syntax", "unknown-key", "expression"])
def test_broken_rules_toml_on_first_start(tmp_path: Path, database_url: str, old: str,
                                          new: str, needle: str, message: str) -> None:
    config = config_copy(tmp_path)
    rules = config / "rules.toml"
    edit(rules, old, new)
    code, line, _ = serve_fails(tmp_path, "--config", str(config),
                                "--bind", f"127.0.0.1:{free_port()}",
                                env=clean_env(GESTOR_DATABASE_URL=database_url))
    assert code == 2
    assert line.startswith(f"gestor: {message}")
    assert f"({rules}, line {line_of(rules, needle)}" in line


def test_broken_rules_toml_with_the_embedded_database(tmp_path: Path) -> None:
    """The embedded PostgreSQL it started for the check is stopped again."""
    config = config_copy(tmp_path)
    rules = config / "rules.toml"
    edit(rules, 'profile_id = "VIP"', 'profile_id = "VIP"\nprofile = "X"')
    _, line, _ = serve_fails(tmp_path, "--config", str(config),
                             "--bind", f"127.0.0.1:{free_port()}")
    assert "profiling[vip].profile: unknown field" in line
    assert (tmp_path / "data" / "pg" / "PG_VERSION").is_file()  # it did start


def test_embedded_database_that_cannot_start(tmp_path: Path) -> None:
    pg = tmp_path / "data" / "pg"
    pg.mkdir(parents=True)
    (pg / "PG_VERSION").write_text("99\n")  # not a data directory this server can use
    _, line, _ = serve_fails(tmp_path, "--bind", f"127.0.0.1:{free_port()}")
    assert line.startswith("gestor: the embedded PostgreSQL did not start: ")
    assert line.endswith(f"({pg})")


def test_data_directory_that_cannot_be_used(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("a file, not a directory\n")
    code, line, _ = serve_fails(tmp_path, "--bind", f"127.0.0.1:{free_port()}")
    assert code == 2
    assert line == f"gestor: cannot use the data directory: file exists ({tmp_path / 'data'})"


def test_workers_out_of_range(tmp_path: Path) -> None:
    code, line, _ = serve_fails(tmp_path, "--workers", "0")
    assert code == 2
    assert line == "gestor: workers must be at least 1, got 0 (--workers)"
