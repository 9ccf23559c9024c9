"""The operator's console in a real browser: headless Chromium (Playwright, tests/e2e/_browser.py)
on `gestor serve --workers 2` and the simulator, each a process of its own.

Signing in (a wrong key refused, the key kept in the tab only), rule versions (a draft's diff,
a dry-run, activation for the admin role only), the live rates moving during a short load,
a subscriber, an alarm raised by a forced inconsistent purchase appearing live and acknowledged
from the page, and a burst of alarms that leaves the page answering clicks within a second and
its list bounded. Screenshots go to `GESTOR_SCREENSHOTS` (e.g. `docs`), else a tmp dir.

These tests are synchronous (Playwright's sync API runs its own event loop): each bounds its
waits with Playwright's timeouts and httpx's, not `trio.fail_after`.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
from playwright.sync_api import BrowserContext, Page, expect

from gestor.store import open_bridge
from tests.e2e._browser import open_chromium, screenshot_dir
from tests.e2e._proc import clean_env, config_without_rate_limits, free_port, start, stop

pytestmark = pytest.mark.e2e

ADMIN_KEY = "console-admin-key-for-the-browser-tests"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
WAIT_MS = 30_000  # every Playwright wait, generous for a loaded box
expect.set_options(timeout=WAIT_MS)
#: A number above zero as the page writes it (`data-value`). (Conditions are checked with
#: `expect`, not `wait_for_function`: the page's Content-Security-Policy forbids eval.)
POSITIVE = re.compile(r"^(?!0(\.0*)?$)[0-9]+(\.[0-9]+)?(e[-+]?[0-9]+)?$")


@attrs.frozen
class Console:
    url: str
    platforms_url: str
    database_url: str
    shots: Path

    def http(self) -> httpx.Client:
        """An operator's client (the admin key)."""
        return httpx.Client(base_url=self.url, timeout=30, headers=ADMIN)

    def channel(self) -> httpx.Client:
        """A channel's client: no key (a loopback server without channel keys is open)."""
        return httpx.Client(base_url=self.url, timeout=30)


@pytest.fixture(scope="module")
def console(platforms_url: str, e2e_database: str,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    where = tmp_path_factory.mktemp("console")
    port = free_port()
    config = config_without_rate_limits(where)  # a short load from one client
    # The recoverer settles the inconsistent purchase of the alarm test within seconds, not
    # the shipped 30 s of staleness plus a 10 s pass.
    toml = config / "gestor.toml"
    text, found = re.subn(r"(?m)^interval = 10\.0(.*)\nstale_after = 30\.0",
                          r"interval = 1.0\1\nstale_after = 5.0", toml.read_text())
    assert found == 1, "the shipped [recovery] lines moved"
    toml.write_text(text)
    with open(where / "stderr", "w") as err:
        proc, _ = start(["serve", "--bind", f"127.0.0.1:{port}", "--workers", "2",
                         "--platforms", platforms_url, "--data-dir", str(where / "data"),
                         "--config", str(config)],
                        clean_env(GESTOR_DATABASE_URL=e2e_database, GESTOR_ADMIN_KEY=ADMIN_KEY),
                        "gestor listening on ", stderr=err)
    try:
        yield Console(f"http://127.0.0.1:{port}", platforms_url, e2e_database,
                      screenshot_dir(where / "shots"))
    finally:
        assert stop(proc) == 0, (where / "stderr").read_text()[-3000:]


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    with open_chromium(tmp_path_factory.mktemp("chromium-profile")) as context:
        context.set_default_timeout(WAIT_MS)
        yield context


def sign_in(page: Page, console: Console, key: str) -> None:
    page.goto(f"{console.url}/console")
    page.fill("#key", key)
    page.click("#signin-form button[type=submit]")


@pytest.fixture
def page(browser: BrowserContext, console: Console) -> Iterator[Page]:
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in(page, console, ADMIN_KEY)
    expect(page.locator("#app")).to_be_visible()
    yield page
    page.close()
    assert errors == [], errors  # no script error on the page


def buy(http: httpx.Client, msisdn: str, key: str) -> dict[str, Any]:
    r = http.post("/v1/purchases", headers={"Idempotency-Key": key, "Prefer": "wait=20"},
                  json={"msisdn": msisdn, "bono_id": "DATA_500MB_1D", "channel": "web"})
    assert r.status_code in (200, 202), r.text
    body: dict[str, Any] = r.json()
    return body


def set_faults(console: Console, faults: dict[str, Any] | None) -> None:
    with httpx.Client(base_url=console.platforms_url, timeout=10) as control:
        r = (control.put("/control/faults", json=faults) if faults is not None
             else control.delete("/control/faults"))
        assert r.status_code == 200, r.text


def value(page: Page, selector: str) -> float:
    raw = page.locator(selector).get_attribute("data-value")
    return float(raw) if raw not in (None, "") else 0.0


# -- the tests ---------------------------------------------------------------------------------

def test_sign_in_refuses_a_wrong_key_and_keeps_the_key_in_the_tab(
        browser: BrowserContext, console: Console) -> None:
    page = browser.new_page()
    sign_in(page, console, "not-a-key")
    expect(page.locator("#signin-error")).to_contain_text("not valid")
    expect(page.locator("#app")).to_be_hidden()
    sign_in(page, console, ADMIN_KEY)
    expect(page.locator("#who-name")).to_have_text("admin")
    expect(page.locator("#who-role")).to_have_text("admin")
    expect(page.locator("#feed-status")).to_have_text("live")
    # The key stays in this tab (sessionStorage), never in localStorage or a cookie.
    assert page.evaluate("sessionStorage.length") == 1
    assert page.evaluate("localStorage.length") == 0
    assert browser.cookies() == []
    page.reload()  # still signed in
    expect(page.locator("#who-name")).to_have_text("admin")
    page.click("#sign-out")
    expect(page.locator("#signin")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0
    page.close()


def test_a_draft_rule_set_is_compared_dry_run_and_activated_by_an_admin_only(
        browser: BrowserContext, page: Page, console: Console) -> None:
    with console.http() as http:
        active = http.get("/v1/admin/rules").json()["active_version"]
        source = http.get(f"/v1/admin/rules/{active}").json()["source"]
        draft = http.post("/v1/admin/rules", json={
            "source": source.rstrip("\n") + "\n# reviewed in the console\n",
            "description": "console test",
            "based_on": active})
        assert draft.status_code == 201, draft.text
        version = draft.json()["version"]
        viewer = http.post("/v1/admin/keys", json={"name": "console-viewer", "role": "viewer"})
        assert viewer.status_code == 201, viewer.text
    page.reload()
    expect(page.locator("#rules-version")).to_have_value(str(version))  # the draft, chosen
    expect(page.locator("#rules-diff .add")).to_have_text(["+ # reviewed in the console"])
    expect(page.locator("#rules-diff .del")).to_have_count(0)
    page.click("#dry-run")
    expect(page.locator("#rules-output tbody tr")).to_have_count(2)
    expect(page.locator("#rules-output tbody tr").first).to_contain_text("5491100000001")

    # A viewer compares and dry-runs, but is offered no activation (nor acknowledgement).
    viewer_page = browser.new_page()
    sign_in(viewer_page, console, viewer.json()["key"])
    expect(viewer_page.locator("#who-role")).to_have_text("viewer")
    expect(viewer_page.locator("#rules-compare")).to_contain_text(
        "activating needs the admin role")
    expect(viewer_page.locator("#rules-activate")).to_have_count(0)
    viewer_page.close()

    page.click("#rules-activate")
    expect(page.locator("#rules-activate")).to_have_text(f"Confirm: activate v{version}")
    page.click("#rules-activate")
    expect(page.locator("#rules-panel h3").first).to_have_text(f"Rule sets: v{version} active")
    with console.http() as http:
        assert http.get("/v1/admin/rules").json()["active_version"] == version


def test_an_inconsistent_purchase_raises_an_alarm_seen_live_and_acknowledged(
        page: Page, console: Console) -> None:
    expect(page.locator("#feed-status")).to_have_text("live")
    msisdn = "5491100000042"
    # Charged, not provisioned, and the refund fails: inconsistent, an alarm.
    set_faults(console, {"prov.provision": {"error_rate": 1.0},
                         "ocs.refund": {"error_rate": 1.0}})
    try:
        with console.channel() as channel:
            tx = buy(channel, msisdn, "inconsistent-1")
        with console.http() as http:
            assert tx["state"] == "inconsistent", tx
            listed = http.get("/v1/admin/alarms", params={"kind": "refund_failed"}).json()
            alarm = next(a for a in listed["alarms"] if a["transaction_id"] == tx["id"])
            row = page.locator(f"#alarm-rows tr[data-id='{alarm['id']}']")
            expect(row).to_have_count(1)  # arrived on the websocket, no reload
            expect(row).to_contain_text("refund_failed")
            expect(row).to_contain_text(msisdn)
            expect(row.locator("td.state")).to_have_text("open")

            row.click()
            expect(page.locator("#alarm-detail h3").first).to_have_text(f"Alarm {alarm['id']}")
            expect(page.locator("#deliveries")).not_to_contain_text("…")
            page.fill("#ack-note", "refunding by hand, ticket 4711")
            page.click("#ack-button")
            expect(page.locator("#alarm-state")).to_have_text("acknowledged")
            expect(row.locator("td.state")).to_have_text("acknowledged")
            after = http.get("/v1/admin/alarms", params={"state": "acknowledged"}).json()
            acknowledged = next(a for a in after["alarms"] if a["id"] == alarm["id"])
            assert acknowledged["acknowledged"]["by"] == "admin"
            assert acknowledged["acknowledged"]["note"] == "refunding by hand, ticket 4711"
    finally:
        set_faults(console, None)
    # The refund goes through at the recoverer's next pass: the row turns resolved, live.
    expect(row.locator("td.state")).to_have_text("resolved", timeout=90_000)


def test_the_rates_move_during_a_short_load(page: Page, console: Console) -> None:
    expect(page.locator("#rate-completed-total")).to_be_visible()
    expect(page.locator("#worker-rows tr")).to_have_count(2)  # both workers, live
    before = value(page, "#rate-completed-total")
    stop_load = threading.Event()
    completed: list[int] = []

    # A few seconds of load whatever the box's speed, for the chart to show a few readings.
    until = time.monotonic() + 6

    def load(n: int) -> None:
        done = 0
        with console.channel() as http:
            i = 0
            while (not stop_load.is_set() or time.monotonic() < until) and i < 200:
                # Each thread its own 25 mobiles: one purchase in flight per mobile.
                tx = buy(http, f"54911000000{n * 25 + i % 25:02d}", f"load-{n}-{i}")
                done += tx["state"] == "completed"
                i += 1
        completed.append(done)

    threads = [threading.Thread(target=load, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    try:
        # The page's purchases/s goes above zero while the load runs, and so do its p50.
        expect(page.locator("#rate-completed")).to_have_attribute("data-value", POSITIVE)
        expect(page.locator("#rate-p50")).to_have_attribute("data-value", POSITIVE)
    finally:
        stop_load.set()
        for thread in threads:
            thread.join()
    assert len(completed) == len(threads)  # no thread failed
    total = before + sum(completed)
    assert sum(completed) > 0
    # Every completed purchase ends up counted, on whichever worker sold it.
    expect(page.locator("#rate-completed-total")).to_have_attribute("data-value",
                                                                   str(int(total)))
    cells = page.locator("#worker-rows tr td:nth-child(4)").all_inner_texts()
    assert sum(int(c.replace(",", "")) for c in cells) >= sum(completed)
    expect(page.locator("#platform-rows tr")).to_have_count(3)  # dwh, ocs, prov
    page.locator("#rates").screenshot(path=str(console.shots / "console-rates.png"))
    # The whole page with its reports as of now (the panel refreshes itself once a minute).
    with page.expect_response(lambda r: "/reports/series" in r.url):
        page.click("#reports-form button")
    page.evaluate("() => window.scrollTo(0, 0)")  # the sticky header at the top
    page.screenshot(path=str(console.shots / "console.png"), full_page=True)


def test_the_reports_are_shown_or_said_unavailable(page: Page, console: Console) -> None:
    """With the report routes (issue 12): the peak-hours heatmap (all 168 cells), revenue and
    rejections by rule for the purchases made above; without them (404): "unavailable"."""
    with console.http() as http:
        answer = http.get("/v1/admin/reports/peak-hours").status_code
    if answer == 404:
        expect(page.locator("#reports-status")).to_contain_text("reports unavailable")
        expect(page.locator("#heatmap")).to_have_text("reports unavailable")
        return
    assert answer == 200
    with console.channel() as channel:
        buy(channel, "5491100000077", "reports-1")
    # Reports are folded in the background: ask again (the page's "Show") until the purchase
    # is in them.
    deadline = time.monotonic() + 90
    while True:
        with page.expect_response(lambda r: "/reports/peak-hours" in r.url):
            page.click("#reports-form button")
        expect(page.locator("#heatmap td")).to_have_count(7 * 24)
        if page.locator("#heatmap td[title$=' 0']").count() < 7 * 24:
            break
        assert time.monotonic() < deadline, "the purchase never reached the reports"
        page.wait_for_timeout(500)
    expect(page.locator("#revenue-total")).to_contain_text("revenue and")
    expect(page.locator("#revenue-total")).not_to_have_text(re.compile(r"^0\.00 revenue"))
    expect(page.locator("#rejections")).not_to_be_empty()
    expect(page.locator("#reports-status")).to_have_text("")
    page.locator("#reports").screenshot(path=str(console.shots / "console-reports.png"))


def test_a_subscriber_is_opened(page: Page, console: Console) -> None:
    msisdn = "5491100000001"
    with console.channel() as channel:
        tx = buy(channel, msisdn, "subscriber-view")
    with console.http() as http:
        if http.get(f"/v1/admin/mobiles/{msisdn}").status_code == 404:
            page.fill("#msisdn", msisdn)
            page.click("#subscriber-form button")
            expect(page.locator("#subscriber-unavailable")).to_be_visible()
            pytest.skip("GET /v1/admin/mobiles/{msisdn} answers 404: the subscriber view "
                        "(issue 12) is not merged in this branch; the page says so")
    page.fill("#msisdn", msisdn)
    page.click("#subscriber-form button")
    expect(page.locator("#subscriber-msisdn")).to_have_text(msisdn)
    expect(page.locator("#subscriber-recent tbody tr").first).to_be_visible()
    assert tx["state"] in page.locator("#subscriber-recent").inner_text()
    page.locator("#subscriber").screenshot(path=str(console.shots / "console-subscriber.png"))


async def raise_alarms(database_url: str, n: int) -> list[int]:
    """`n` open alarms, each inserted and announced on its own (as workers raise them)."""
    ids = []
    async with open_bridge(database_url, min_size=1, max_size=1) as bridge:
        async def one(conn: Any, i: int) -> int:
            row = await conn.fetchrow(
                "INSERT INTO alarms (kind, severity, message, subject) VALUES"
                " ('console_burst', 'warning', $1, $2) RETURNING id",
                f"burst alarm {i}", f"console-burst-{i}")
            await conn.execute("SELECT pg_notify('gestor_alarms', $1)", str(row["id"]))
            return int(row["id"])

        for i in range(n):
            ids.append(await bridge.run(one, i, transaction=False))
    return ids


def test_a_burst_of_alarms_keeps_the_page_responsive_and_its_list_bounded(
        page: Page, console: Console) -> None:
    expect(page.locator("#feed-status")).to_have_text("live")
    raised: list[int] = []
    took: list[float] = []

    def raise_them() -> None:
        started = time.monotonic()
        raised.extend(trio.run(raise_alarms, console.database_url, 400))
        took.append(time.monotonic() - started)

    burst = threading.Thread(target=raise_them)
    burst.start()
    slowest = 0.0
    clicks = 0
    try:
        # While the alarms pour in, a click on the newest row is answered within a second.
        # (Dispatched to the row: Playwright's own click would first wait for the row to
        # stop moving, and rows keep arriving above it: that wait is not the page's.)
        while burst.is_alive() or clicks < 3:
            top_id = page.locator("#alarm-rows tr").first.get_attribute("data-id")
            started = time.monotonic()
            page.locator(f"#alarm-rows tr[data-id='{top_id}']").dispatch_event("click")
            expect(page.locator("#alarm-detail h3").first).to_have_text(f"Alarm {top_id}")
            slowest = max(slowest, time.monotonic() - started)
            clicks += 1
    finally:
        burst.join()
    assert len(raised) == 400
    assert slowest < 1.0, f"a click took {slowest:.2f} s to be answered"
    newest = page.locator(f"#alarm-rows tr[data-id='{raised[-1]}']")
    expect(newest).to_have_count(1)
    expect(newest.locator("td.state")).to_have_text("open")
    expect(page.locator("#feed-rate")).to_contain_text("received")
    # Bounded: the newest 300 on the page; older ones are paged from the API.
    rows = page.locator("#alarm-rows tr")
    expect(rows).to_have_count(300)
    oldest = min(int(i) for i in page.eval_on_selector_all(
        "#alarm-rows tr", "rows => rows.map(r => r.dataset.id)"))
    page.locator("#alarms").screenshot(path=str(console.shots / "console-alarms.png"))
    page.click("#alarm-older")
    expect(rows).to_have_count(400)
    expect(page.locator(f"#alarm-rows tr[data-id='{oldest - 1}']")).to_have_count(1)
    print(f"console: 400 alarms in {took[0]:.2f} s ({400 / took[0]:.0f}/s); {clicks} clicks "
          f"meanwhile, the slowest answered in {slowest:.3f} s")
