"""The dashboard at /ui on a real gateway with a fake provider: security over HTTP, then a real
browser (Debian's Chromium driven by Playwright) logging in, watching traffic and steering slots."""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from broke.cli.main import app
from conftest import run_cli
from dashboard_gateway import dashboard_gateway

pytestmark = pytest.mark.timeout(300)
CHROMIUM = os.environ.get("BROKE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SECRET_PROMPT = "the-prompt-text-must-never-show"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    with dashboard_gateway(tmp_path_factory.mktemp("dashboard") / "home") as gw:
        yield gw


@pytest.fixture
def gw(gateway, monkeypatch):
    """Per test: this module's home, sonnet on model-a, not frozen, no failure rules, fresh health."""
    monkeypatch.setenv("BROKE_HOME", str(gateway["home"]))
    gateway["fake"].clear()
    (gateway["home"] / "health.json").unlink(missing_ok=True)
    CliRunner().invoke(app, ["freeze", "off"])
    run_cli("swap", "sonnet=fake/model-a")
    return gateway


def bearer(gw) -> dict[str, str]:
    return {"authorization": f"Bearer {gw['token']}"}


def chat(gw, model="sonnet", text="hi"):
    return httpx.post(gw["url"] + "/v1/chat/completions", headers=bearer(gw), timeout=30,
                      json={"model": model, "messages": [{"role": "user", "content": text}]})


def login(gw) -> httpx.Client:
    """An HTTP client holding a dashboard session, logged in through the form."""
    client = httpx.Client(base_url=gw["url"], timeout=30)
    answer = client.post("/ui/login", data={"token": gw["token"]}, headers={"origin": gw["url"]})
    assert answer.status_code == 303 and answer.headers["location"] == "/ui"
    return client


# ---- pieces without a gateway ----------------------------------------------------------------------
def test_sessions_and_links_expire_and_links_work_once():
    from broke.gateway.dashboard.sessions import LINK_TTL_S, SESSION_TTL_S, Sessions

    sessions = Sessions()
    session_id, session = sessions.create(1000.0)
    assert sessions.get(session_id, 1000.0 + SESSION_TTL_S - 1) == session
    assert sessions.get(session_id, 1000.0 + SESSION_TTL_S) is None
    assert sessions.get("made-up", 1000.0) is None and sessions.get(None, 1000.0) is None
    code = sessions.new_link(1000.0)
    assert sessions.redeem(code, 1000.0 + 1) and not sessions.redeem(code, 1000.0 + 2)
    late = sessions.new_link(1000.0)
    assert not sessions.redeem(late, 1000.0 + LINK_TTL_S)


def test_only_loopback_names_and_this_origin_pass():
    from broke.gateway.dashboard.sessions import host_allowed, same_origin

    assert all(host_allowed(h) for h in ("127.0.0.1:4000", "localhost:4000", "[::1]:4000", "127.0.0.1"))
    assert not any(host_allowed(h) for h in ("evil.example:4000", "127.0.0.2.evil.example", "", "0.0.0.0:4000"))
    assert same_origin("http://127.0.0.1:4000", "127.0.0.1:4000") and same_origin(None, "127.0.0.1:4000")
    assert not same_origin("http://127.0.0.1:4001", "127.0.0.1:4000")
    assert not same_origin("null", "127.0.0.1:4000") and not same_origin("http://evil.example", "127.0.0.1:4000")


def test_a_listener_that_stops_reading_loses_its_oldest_traces_never_blocks():
    import time

    from broke.gateway.traffic import LISTENER_BACKLOG, Traffic

    traffic = Traffic(history=5)
    queue = traffic.listen()
    for number in range(LISTENER_BACKLOG + 3):
        traffic.publish(traffic.begin("client", "sonnet", f"r{number}", 1, f"req_{number}"), time.perf_counter())
    assert len(traffic.recent) == 5 and queue.qsize() == LISTENER_BACKLOG
    assert queue.get_nowait()["requested"] == "r3"
    traffic.leave(queue)
    assert not traffic.listeners


# ---- security ------------------------------------------------------------------------------------
def test_every_page_and_call_needs_the_token(gw):
    page = httpx.get(gw["url"] + "/ui")
    assert page.status_code == 303 and page.headers["location"] == "/ui/login"
    for path in ("/ui/api/overview", "/ui/api/traffic", "/ui/api/health", "/ui/api/local", "/ui/api/events",
                 "/ui/api/harness", "/ui/static/app.js"):
        assert httpx.get(gw["url"] + path).status_code == 401, path
    assert httpx.post(gw["url"] + "/ui/api/freeze", json={"frozen": True}).status_code == 401
    profile_token = json.loads(run_cli("connect", "--profile", "ci", "--json").stdout)["token"]
    answer = httpx.get(gw["url"] + "/ui/api/overview", headers={"authorization": f"Bearer {profile_token}"})
    assert answer.status_code == 401  # a profile's token is for requests, not for steering
    assert httpx.get(gw["url"] + "/ui/api/overview", headers=bearer(gw)).status_code == 200


def test_login_form_sets_a_strict_http_only_cookie_and_never_echoes_the_token(gw):
    assert httpx.post(gw["url"] + "/ui/login", data={"token": "x" * 10_000}).status_code == 413
    wrong = httpx.post(gw["url"] + "/ui/login", data={"token": "broke-wrong"})
    assert wrong.status_code == 401 and "not the client token" in wrong.text
    answer = httpx.post(gw["url"] + "/ui/login", data={"token": gw["token"]}, headers={"origin": gw["url"]})
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    assert gw["token"] not in cookie
    client = login(gw)
    for path in ("/ui", "/ui/static/app.js", "/ui/api/overview", "/ui/api/session", "/ui/api/traffic"):
        answer = client.get(path)
        assert answer.status_code == 200, path
        assert gw["token"] not in answer.text, path
        assert "default-src 'none'" in answer.headers["content-security-policy"]


def test_cross_site_changes_are_refused(gw):
    client = login(gw)
    csrf = client.get("/ui/api/session").json()["csrf"]
    body = {"slot": "sonnet", "backend": "fake/model-b"}
    evil = client.post("/ui/api/swap", json=body, headers={"origin": "http://evil.example", "x-broke-csrf": csrf})
    assert evil.status_code == 403 and "cross-site" in evil.json()["error"]["message"]
    cross = client.post("/ui/api/swap", json=body, headers={"sec-fetch-site": "cross-site", "x-broke-csrf": csrf})
    assert cross.status_code == 403
    no_csrf = client.post("/ui/api/swap", json=body, headers={"origin": gw["url"]})
    assert no_csrf.status_code == 403 and "CSRF" in no_csrf.json()["error"]["message"]
    assert json.loads(run_cli("list", "--json").stdout)["slots"][0]["backend"] == "fake/model-a"
    rebound = httpx.get(gw["url"] + "/ui/login", headers={"host": f"evil.example:{gw['port']}"})
    assert rebound.status_code == 403  # DNS rebinding: a foreign name that resolves to 127.0.0.1
    cross_login = httpx.post(gw["url"] + "/ui/login", data={"token": gw["token"]},
                             headers={"origin": "http://evil.example"})
    assert cross_login.status_code == 403
    ok = client.post("/ui/api/swap", json=body, headers={"origin": gw["url"], "x-broke-csrf": csrf})
    assert ok.status_code == 200, ok.text
    assert ok.json()["generation"] == json.loads(run_cli("list", "--json").stdout)["generation"]


def test_one_time_link_from_the_cli_logs_in_once(gw):
    result = CliRunner().invoke(app, ["dashboard", "--json"])
    assert result.exit_code == 0, result.output
    links = json.loads(result.stdout)
    assert links["url"] == gw["url"] + "/ui" and gw["token"] not in links["login_link"]
    first = httpx.get(links["login_link"])
    assert first.status_code == 303 and "broke_session=" in first.headers["set-cookie"]
    assert httpx.get(links["login_link"]).status_code == 401


def test_changes_give_the_cli_s_errors(gw):
    """Same core functions, same texts: an unknown backend, then a change while frozen."""
    client = login(gw)
    headers = {"origin": gw["url"], "x-broke-csrf": client.get("/ui/api/session").json()["csrf"]}
    cli = CliRunner().invoke(app, ["swap", "sonnet", "fake/nope"])
    answer = client.post("/ui/api/swap", json={"slot": "sonnet", "backend": "fake/nope"}, headers=headers)
    assert answer.status_code == 404
    assert cli.stderr.strip() == f"broke: error: {answer.json()['error']['message']}"
    assert client.post("/ui/api/freeze", json={"frozen": True}, headers=headers).status_code == 200
    cli = CliRunner().invoke(app, ["fallback", "sonnet", "opus"])
    answer = client.post("/ui/api/fallbacks", json={"slot": "sonnet", "fallbacks": ["opus"]}, headers=headers)
    assert answer.status_code == 409 and answer.json()["error"]["type"] == "frozen"
    assert cli.stderr.strip() == f"broke: error: {answer.json()['error']['message']}"
    bad = client.post("/ui/api/fallbacks", json={"slot": "sonnet", "fallbacks": "opus"}, headers=headers)
    assert bad.status_code == 400


def test_traffic_shows_routing_never_the_prompt(gw):
    assert chat(gw, text=SECRET_PROMPT).status_code == 200
    data = httpx.get(gw["url"] + "/ui/api/traffic", headers=bearer(gw)).json()
    last = data["recent"][-1]
    assert (last["slot"], last["backend"], last["status"], last["attempts"]) == ("sonnet", "fake/model-a", 200, 1)
    assert last["client"] == "client" and last["key_ref"].startswith("k-") and last["tokens"]
    assert SECRET_PROMPT not in json.dumps(data)
    assert {"name": "fake/model-a"}.items() <= next(r for r in data["stats"]["backends"]
                                                      if r["name"] == "fake/model-a").items()
    assert chat(gw, model="haiku").status_code == 400  # no key for its backend: says why, not just "no"
    refused = httpx.get(gw["url"] + "/ui/api/traffic", headers=bearer(gw)).json()["recent"][-1]
    assert (refused["slot"], refused["status"], refused["attempts"]) == ("haiku", 400, 0)
    assert "the key variable ANTHROPIC_API_KEY, which is not set" in refused["error"]
    log = (gw["home"] / "run" / "gateway.log").read_text()
    assert gw["token"] not in log and SECRET_PROMPT not in log


# ---- in a real browser -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing; `apt-get install -y chromium` (see README, tests)")
        pytest.skip(f"{CHROMIUM} is missing; `apt-get install -y chromium` to run the browser tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser, gw):
    """A page logged in through the login form, its data loaded and its live stream open."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []  # script errors (a refused change's 409 is expected)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(gw["url"] + "/ui")
    assert page.url.endswith("/ui/login")
    page.fill("#token", gw["token"])
    page.click("button[type=submit]")
    try:
        page.wait_for_selector("body[data-ready='1']", state="attached")
        page.wait_for_selector("#live.on")
    except Exception:
        pytest.fail(f"the page did not come up: {errors}; {page.content()[:3000]}")
    yield page
    assert not errors, errors
    context.close()


def test_browser_shows_the_baselines_as_a_chart(page):
    rows = page.locator("#chart-decode .row")
    assert rows.count() == 2
    assert "fake/model-a" in rows.first.inner_text() and "84 tok/s" in rows.first.inner_text()


def test_browser_sees_a_request_live(page, gw):
    before = page.locator("#requests tbody tr.request").count()
    assert chat(gw).status_code == 200
    row = page.locator("#requests tbody tr.request").first
    # Waits in the driver: a JavaScript predicate would need eval, which the page's CSP forbids.
    page.locator("#requests tbody tr.request").nth(before).wait_for(state="attached")
    assert row.get_attribute("data-slot") == "sonnet" and row.get_attribute("data-backend") == "fake/model-a"
    assert row.locator("td").nth(5).inner_text() == "200"


def test_browser_swaps_a_slot_and_the_next_request_follows(page, gw):
    slot = page.locator("#slots tr[data-slot='sonnet']")
    slot.locator("select.backend").select_option("fake/model-b")
    slot.locator("button.swap").click()
    page.wait_for_selector("#notice:not(.refused):has-text('sonnet → fake/model-b')")
    page.wait_for_selector("#slots tr[data-slot='sonnet'] .chosen:has-text('fake/model-b')")
    answer = chat(gw)
    assert answer.headers["x-broke-backend"] == "fake/model-b"
    page.wait_for_selector("#requests tbody tr.request[data-backend='fake/model-b']")


def test_browser_sets_fallbacks_and_loads_a_team(page, gw):
    slot = page.locator("#slots tr[data-slot='sonnet']")
    slot.locator("input.fallbacks").fill("opus, fake/model-b")
    slot.locator("button.set-fallbacks").click()
    page.wait_for_selector("#notice:not(.refused):has-text('sonnet falls back to: opus → fake/model-b')")
    shown = json.loads(run_cli("fallback", "sonnet", "--json").stdout)
    assert shown["fallbacks"] == ["opus", "fake/model-b"]
    run_cli("swap", "sonnet=fake/model-b")
    run_cli("team", "save", "mine")
    run_cli("swap", "sonnet=fake/model-a")
    page.reload()  # a saved team changes no state generation: the list is read on load
    page.wait_for_selector("body[data-ready='1']", state="attached")
    page.select_option("#team-select", "mine")
    page.click("#team-load")
    page.wait_for_selector("#notice:not(.refused):has-text('team mine loaded')")
    page.wait_for_selector("#team:text-is('team mine')")
    assert page.locator("#slots tr[data-slot='sonnet'] select.backend").input_value() == "fake/model-b"
    run_cli("fallback", "sonnet", "--clear")


def test_browser_explains_a_refused_change_when_frozen(page, gw, tmp_path):
    run_cli("freeze", "on")  # from the CLI: the page hears of it through its live stream
    page.wait_for_selector("#frozen:not([hidden])")
    slot = page.locator("#slots tr[data-slot='sonnet']")
    slot.locator("select.backend").select_option("fake/model-b")
    slot.locator("button.swap").click()
    notice = page.locator("#notice.refused")
    notice.wait_for()
    assert "state is frozen: no changes allowed" in notice.inner_text()
    assert "Unfreeze" in notice.inner_text()
    assert json.loads(run_cli("list", "--json").stdout)["slots"][0]["backend"] == "fake/model-a"
    page.click("#freeze")  # now labelled Unfreeze
    page.wait_for_selector("#notice:not(.refused):has-text('state unfrozen')")
    page.wait_for_selector("#frozen[hidden]", state="attached")

    # A failover for the picture: model-a answers 500 once, sonnet falls back to opus (model-b).
    run_cli("fallback", "sonnet", "opus")
    gw["fake"].fail("500", model="model-a", times=1)
    for text in ("one", "two", "three"):
        chat(gw, "opus" if text == "two" else "sonnet", text)
    page.wait_for_selector("#requests tbody tr.request td:nth-child(7):text-is('2')")
    run_cli("model-state", "set", "fake/model-a", "cooldown", "--for", "60")  # a failover's cooldown lasts 1 s
    page.wait_for_selector("#health-models td:text-is('fake/model-a') + td:text-is('cooldown')")
    page.wait_for_selector("#stats-slots td:text-is('opus')")
    page.wait_for_selector("#stats-backends svg.spark polyline", state="attached")  # latency over time
    target = Path(os.environ.get("BROKE_SCREENSHOT", tmp_path / "dashboard.png"))
    page.screenshot(path=str(target), full_page=True)
    assert target.stat().st_size > 10_000
    run_cli("fallback", "sonnet", "--clear")


def test_the_harness_panel_lists_recent_runs_and_lane_health(gw):
    from broke.harness.ledger import Ledger

    ledger = Ledger(gw["home"], "20260102-030405-abcdef").create()
    ledger.append("started", run=ledger.run_id, pid=None, client="claude", task="fix the bug", policy="balanced")
    ledger.append("checkpoint", attempt=0, exit=0, complete=True)
    ledger.append("review", attempt=0, verdict="ACCEPT_WITH_WARNINGS",
                  lanes={"verifier": {"verdict": "ACCEPT"}, "adversary": {"verdict": "DEGRADED"}})
    ledger.append("finished", verdict="ACCEPT_WITH_WARNINGS", complete=True)
    answer = httpx.get(gw["url"] + "/ui/api/harness", headers=bearer(gw))
    assert answer.status_code == 200
    data = answer.json()
    run = next(r for r in data["runs"] if r["run"] == ledger.run_id)
    assert run["status"] == "finished" and run["verdict"] == "ACCEPT_WITH_WARNINGS" and run["task"] == "fix the bug"
    assert data["lanes"]["adversary"]["DEGRADED"] >= 1


def test_thumbs_on_an_auto_decision_record_feedback(gw):
    run_cli("router", "tier", "basic", "fake/model-a")
    run_cli("router", "tier", "premium", "fake/model-b")
    run_cli("router", "thresholds", "--balanced", "0.99", "--premium", "0.99")
    try:
        answer = chat(gw, "auto", "write a haiku about routers")
        assert answer.status_code == 200 and answer.headers["x-broke-tier"] == "basic"
        request_id = answer.headers["x-broke-request-id"]
        client = login(gw)
        csrf = client.get("/ui/api/session").json()["csrf"]
        headers = {"origin": gw["url"], "x-broke-csrf": csrf}
        assert client.post("/ui/api/feedback", json={"request_id": request_id, "verdict": "good"}).status_code == 403
        assert client.post("/ui/api/feedback", json={"request_id": "req_nope", "verdict": "good"},
                           headers=headers).status_code == 404
        for _ in range(50):  # the outcome record is written off the request path
            thumbs = client.post("/ui/api/feedback", json={"request_id": request_id, "verdict": "good"},
                                 headers=headers)
            if thumbs.status_code != 404:
                break
            time.sleep(0.05)
        assert thumbs.status_code == 200 and thumbs.json() == {"learned": True}
        records = json.loads(run_cli("router", "outcomes", "--json").stdout)
        assert next(r for r in records if r["request_id"] == request_id)["feedback"] == "good"
    finally:
        run_cli("router", "tier", "basic")
        run_cli("router", "tier", "premium")
        run_cli("router", "forget")
