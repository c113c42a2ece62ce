"""A real gateway (LiteLLM + front proxy) with two fake backends, for the dashboard's tests."""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import run_cli
from broke.procs import free_port
from fake_provider import FakeProvider


@contextmanager
def dashboard_gateway(home: Path):
    fake = FakeProvider().start()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BROKE_HOME", str(home))
        for name in [n for n in os.environ if n.endswith("_API_KEY") or "_API_KEY_" in n]:
            mp.delenv(name)
        home.mkdir(parents=True)
        (home / ".env").write_text("FAKE_API_KEY=key-one\n")
        for model in ("model-a", "model-b"):
            run_cli("backend", "add", f"fake/{model}", "--provider", "openai-compatible", "--api-base",
                    fake.base_url, "--model", model, "--key-env", "FAKE_API_KEY")
        run_cli("swap", "sonnet=fake/model-a", "opus=fake/model-b")
        port = free_port()
        run_cli("start", "--port", str(port))
        token = json.loads(run_cli("connect", "--json").stdout)["token"]
        try:
            yield {"home": home, "fake": fake, "url": f"http://127.0.0.1:{port}", "port": port, "token": token}
        finally:
            run_cli("stop")
            fake.stop()
