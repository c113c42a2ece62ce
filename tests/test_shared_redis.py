"""Two real gateways (two homes) on one real redis-server (loopback, free port): cooldowns and rate
windows are shared; Redis killed mid-test costs no request, and both say so."""
from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from broke.cli.main import app
from broke.procs import free_port
from conftest import add_fake_backends, run_cli
from fake_provider import FakeProvider

pytestmark = [pytest.mark.timeout(300),
              pytest.mark.skipif(shutil.which("redis-server") is None,
                                 reason="no redis-server (./install.sh --dev installs it as root)")]


def start_redis(port: int, tmp: Path) -> subprocess.Popen:
    process = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", str(tmp)], stdout=subprocess.DEVNULL)
    import redis

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            redis.Redis(port=port, socket_timeout=0.5).ping()
            return process
        except redis.RedisError:
            time.sleep(0.05)
    process.kill()
    raise AssertionError("redis-server did not start")


def chat(url: str, token: str) -> httpx.Response:
    body = {"model": "haiku", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(url + "/v1/chat/completions", json=body, timeout=30, headers={"authorization": f"Bearer {token}"})


@pytest.fixture
def two_gateways(tmp_path, monkeypatch, broke_home):
    fake = FakeProvider().start()
    fake.retry_after = "30"
    redis_port = free_port()
    redis_server = start_redis(redis_port, tmp_path)
    homes = {name: tmp_path / name for name in ("a", "b")}
    gateways: dict[str, dict] = {}
    ctx = {"gw": gateways, "fake": fake, "redis": redis_server, "redis_port": redis_port, "tmp": tmp_path}
    try:
        for name, home in homes.items():
            monkeypatch.setenv("BROKE_HOME", str(home))
            add_fake_backends(home, fake, "cloud")
            with (home / ".env").open("a") as env:
                env.write(f"SPARE_KEY=key-two\nBROKE_REDIS_URL=redis://127.0.0.1:{redis_port}/0\n")
            run_cli("backend", "add", "fake/spare", "--provider", "openai-compatible", "--api-base", fake.base_url,
                    "--model", "spare", "--key-env", "SPARE_KEY")
            run_cli("swap", "haiku=fake/cloud")
            run_cli("fallback", "haiku", "fake/spare")
            run_cli("profile", "new", "bot", "--slots", "haiku", "--rpm", "3")
            run_cli("profile", "new", "wordy", "--slots", "haiku", "--tpm", "1")
            run_cli("profile", "new", "payer", "--slots", "haiku", "--budget-usd", "0.000001")
            run_cli("backend", "price", "fake/cloud", "--price-in", "2", "--price-out", "8")
            port = free_port()
            run_cli("start", "--port", str(port))
            gateways[name] = {"home": home, "url": f"http://127.0.0.1:{port}",
                              "token": json.loads(run_cli("connect", "--json").stdout)["token"],
                              **{profile: json.loads(run_cli("connect", "--profile", profile, "--json").stdout)["token"]
                                 for profile in ("bot", "wordy", "payer")}}
        yield ctx
    finally:
        for home in homes.values():
            monkeypatch.setenv("BROKE_HOME", str(home))
            run_cli("stop")
        ctx["redis"].kill()
        ctx["redis"].wait()
        fake.stop()


def test_a_429_on_one_gateway_cools_the_key_for_the_other(two_gateways):
    a, b, fake = two_gateways["gw"]["a"], two_gateways["gw"]["b"], two_gateways["fake"]
    fake.fail("429", key="key-one", times=1)
    first = chat(a["url"], a["token"])
    assert first.status_code == 200 and first.headers["x-broke-backend"] == "fake/spare"
    before = len(fake.requests)
    answers = [chat(b["url"], b["token"]) for _ in range(3)]
    assert [r.headers["x-broke-backend"] for r in answers] == ["fake/spare"] * 3
    assert [r["key"] for r in fake.requests[before:]] == ["key-two"] * 3  # B sent key-one nothing


def test_a_profile_rpm_holds_across_both_gateways(two_gateways):
    a, b = two_gateways["gw"]["a"], two_gateways["gw"]["b"]
    codes = [chat(gw["url"], gw["bot"]).status_code for gw in (a, b, a, b, a, b)]
    assert codes == [200, 200, 200, 429, 429, 429]


def test_a_profile_tpm_holds_across_both_gateways(two_gateways):
    a, b = two_gateways["gw"]["a"], two_gateways["gw"]["b"]
    assert chat(a["url"], a["wordy"]).status_code == 200  # its tokens fill the 1-token window of both
    time.sleep(0.3)  # A counts them in Redis as the answer ends
    refused = chat(b["url"], b["wordy"])
    assert refused.status_code == 429 and "tokens per minute" in refused.json()["error"]["message"]
    assert chat(a["url"], a["wordy"]).status_code == 429


def test_a_profile_budget_spent_on_one_gateway_holds_on_the_other(two_gateways):
    a, b = two_gateways["gw"]["a"], two_gateways["gw"]["b"]
    first = chat(a["url"], a["payer"])
    assert first.status_code == 200 and float(first.headers["x-broke-cost-usd"]) > 0.000001
    time.sleep(0.3)  # A adds the cost to the shared counter as the answer ends
    refused = chat(b["url"], b["payer"])  # B has answered nothing for it: only A's spend puts it over
    assert refused.status_code == 429
    assert "has spent its budget" in refused.json()["error"]["message"]
    assert 0 < int(refused.headers["retry-after"]) <= 31 * 86400  # a monthly budget: at the next month
    assert chat(b["url"], b["token"]).status_code == 200  # another profile is not held to it


def test_redis_killed_mid_test_both_keep_serving_and_say_so(two_gateways, monkeypatch):
    gateways = two_gateways["gw"]
    for gw in gateways.values():
        assert httpx.get(gw["url"] + "/health", timeout=5).json()["shared"] == "ok"
    two_gateways["redis"].kill()
    two_gateways["redis"].wait()
    for gw in gateways.values():
        answers = [chat(gw["url"], gw["token"]) for _ in range(3)]
        assert [r.status_code for r in answers] == [200] * 3
        health = httpx.get(gw["url"] + "/health", timeout=5).json()
        where = f"redis://127.0.0.1:{two_gateways['redis_port']}"
        assert health["shared"].startswith(f"down: Redis at {where}") and health["status"] == "ok"
        monkeypatch.setenv("BROKE_HOME", str(gw["home"]))
        status = run_cli("status").stdout
        assert "unreachable" in status and "own state" in status
        doctor = CliRunner().invoke(app, ["doctor", "--json"])
        assert "shared_state_down" in doctor.stdout and "Traceback" not in doctor.output
    # back: after the breaker's pause the gateways share again
    two_gateways["redis"] = start_redis(two_gateways["redis_port"], two_gateways["tmp"])
    time.sleep(2.2)
    for gw in gateways.values():
        assert chat(gw["url"], gw["token"]).status_code == 200
        assert httpx.get(gw["url"] + "/health", timeout=5).json()["shared"] == "ok"


def test_requests_counted_during_an_outage_count_for_the_other_gateway_when_redis_returns(two_gateways):
    a, b = two_gateways["gw"]["a"], two_gateways["gw"]["b"]
    two_gateways["redis"].kill()
    two_gateways["redis"].wait()
    assert [chat(a["url"], a["bot"]).status_code for _ in range(2)] == [200, 200]  # A's own window: 2 of rpm 3
    two_gateways["redis"] = start_redis(two_gateways["redis_port"], two_gateways["tmp"])  # back, empty
    time.sleep(2.2)  # the breaker's pause
    assert chat(a["url"], a["bot"]).status_code == 200  # A writes its 2 back, and this one makes 3
    refused = chat(b["url"], b["bot"])
    assert refused.status_code == 429 and "requests per minute" in refused.json()["error"]["message"]


def test_spend_during_an_outage_counts_for_the_other_gateway_when_redis_returns(two_gateways):
    a, b = two_gateways["gw"]["a"], two_gateways["gw"]["b"]
    two_gateways["redis"].kill()
    two_gateways["redis"].wait()
    assert chat(a["url"], a["payer"]).status_code == 200  # past its budget, on A's own ledger only
    two_gateways["redis"] = start_redis(two_gateways["redis_port"], two_gateways["tmp"])  # back, empty
    time.sleep(2.2)  # the breaker's pause
    assert chat(a["url"], a["token"]).status_code == 200  # A's next request: it writes its spend back
    refused = chat(b["url"], b["payer"])
    assert refused.status_code == 429 and "has spent its budget" in refused.json()["error"]["message"]
