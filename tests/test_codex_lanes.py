"""Codex's lanes through a real gateway: the pinned Codex discovers them (no "model metadata not found"
warning) and each model name it sends lands on its own lane."""
from __future__ import annotations

import json

import httpx
import pytest
from typer.testing import CliRunner

from broke.catalog import load_catalog
from broke.cli.main import app
from broke.procs import free_port
from clients import CODEX_VERSION, diagnosis, run_broke
from conftest import module_home, run_cli
from fake_conversation import Reply
from fake_provider import FakeProvider

pytestmark = pytest.mark.timeout(600)
CODEX_SLOTS = next(f for f in load_catalog().families if f.name == "codex").slots


@pytest.fixture(scope="module")
def lanes(tmp_path_factory):
    home = tmp_path_factory.mktemp("lanes") / "home"
    fake = FakeProvider().start()
    with module_home(home):
        home.mkdir(parents=True, exist_ok=True)
        (home / ".env").write_text("FAKE_API_KEY=key-one\n")
        run_cli("backend", "add", "fakeoai/gpt-fake", "--provider", "openai", "--api-base", fake.base_url,
                "--model", "gpt-5-codex", "--key-env", "FAKE_API_KEY")
        run_cli("swap", *[f"{slot}=fakeoai/gpt-fake" for slot in CODEX_SLOTS])
        port = free_port()
        run_cli("start", "--port", str(port))
        try:
            token = json.loads(run_cli("connect", "--json").stdout)["token"]
            yield {"home": home, "fake": fake, "port": port, "token": token}
        finally:
            CliRunner().invoke(app, ["stop"])
            fake.stop()


def test_codex_discovery_lists_every_lane_under_its_codex_name(lanes):
    answer = httpx.get(f"http://127.0.0.1:{lanes['port']}/v1/models", params={"client_version": CODEX_VERSION},
                       headers={"authorization": f"Bearer {lanes['token']}"})
    assert answer.status_code == 200
    models = {m["slug"]: m for m in answer.json()["models"]}
    names = load_catalog().codex_names
    assert {slug for slug, m in models.items() if m["visibility"] == "list"} == set(names.values())
    assert set(names) <= set(models)  # the slot names too, hidden from the picker
    for model in models.values():
        assert model["base_instructions"] and model["supported_reasoning_levels"]
    plain = httpx.get(f"http://127.0.0.1:{lanes['port']}/v1/models",
                      headers={"authorization": f"Bearer {lanes['token']}"}).json()
    assert plain["object"] == "list" and "gpt51codexmini" in {m["id"] for m in plain["data"]}


@pytest.mark.parametrize("name, slot", [("gpt-5.1-codex-mini", "gpt51codexmini"), ("gpt-5.4", "gpt54")])
def test_codex_runs_a_lane_without_a_metadata_warning(lanes, tmp_path, client_bin, monkeypatch, name, slot):
    monkeypatch.setenv("BROKE_HOME", str(lanes["home"]))
    lanes["fake"].script(Reply(f"answered on {name}"))
    done = run_broke(lanes, tmp_path, client_bin, "codex", "exec", "--skip-git-repo-check", "-m", name, "say hi")
    assert done.returncode == 0 and f"answered on {name}" in done.stdout, (
        f"exit {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr[-3000:]}\n{diagnosis(lanes['home'])}")
    assert "metadata" not in (done.stdout + done.stderr).lower(), done.stderr[-3000:]
    rows = json.loads(CliRunner().invoke(app, ["metrics", "--json"]).stdout)
    assert any(row["slot"] == slot and row["requests"] for row in rows), rows
