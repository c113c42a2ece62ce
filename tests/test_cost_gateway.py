"""The cost ledger of a real gateway process: every answer written before `broke stop` returns, and read
back after a restart (issue 25)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import add_fake_backends, run_cli, serving
from fake_provider import FakeProvider

pytestmark = pytest.mark.timeout(300)


def test_the_ledger_holds_every_answer_across_a_gateway_restart(broke_home: Path, cli: Any) -> None:
    with FakeProvider() as fake:
        fake.cache_read_tokens = 500
        add_fake_backends(broke_home, fake, "model-a")
        run_cli("backend", "price", "fake/model-a", "--price-in", "2", "--price-out", "8",
                "--price-cache-read", "0.5")
        run_cli("swap", "sonnet=fake/model-a")
        run_cli("fallback", "sonnet", "--clear")
        # "hi": 1 input token, 500 read from the cache, 3 out: (1 * 2 + 500 * 0.5 + 3 * 8) / 1e6
        one = (1 * 2 + 500 * 0.5 + 3 * 8) / 1_000_000
        body = {"model": "sonnet", "messages": [{"role": "user", "content": "hi"}]}
        for stream in (False, True):
            with serving() as (port, token):
                answer = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json={**body, "stream": stream},
                                    headers={"authorization": f"Bearer {token}"}, timeout=30)
                assert answer.status_code == 200, answer.text
                if not stream:
                    assert float(answer.headers["x-broke-cost-usd"]) == pytest.approx(one, abs=1e-6)
                else:
                    assert '"usage"' not in answer.text
    report = json.loads(cli("cost", "--by", "backend", "--json").stdout)
    assert report["requests"] == 2 and report["total_usd"] == pytest.approx(2 * one, abs=1e-6)
    assert report["rows"][0]["backend"] == "fake/model-a" and report["rows"][0]["tokens"] == 2 * 504
    assert oct((broke_home / "records.sqlite").stat().st_mode & 0o777) == "0o600"
