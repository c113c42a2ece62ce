"""State files on disk: modes, snapshots, migrations, and what read-only commands import."""
from __future__ import annotations

import json
import stat
import subprocess
import sys
import textwrap

from broke.state import migrations
from broke.state.model import SCHEMA_VERSION
from broke.state.store import StateStore


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_home_is_0700_and_every_file_0600(broke_home, cli):
    assert cli("swap", "sonnet", "groq/llama-3.3-70b-versatile").exit_code == 0
    assert cli("snapshot", "save").exit_code == 0
    assert cli("team", "save", "mine").exit_code == 0
    assert cli("profile", "new", "p").exit_code == 0
    assert mode(broke_home) == 0o700
    for sub in ("snapshots", "teams", "profiles"):
        assert mode(broke_home / sub) == 0o700
    files = [p for p in broke_home.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"state.toml", "state.toml.lock", "000001.toml", "mine.toml", "p.toml"}
    for path in files:
        assert mode(path) == 0o600, path


def test_read_commands_write_nothing(broke_home, cli):
    for args in (["list"], ["route", "sonnet"], ["explain", "opus"], ["doctor"], ["validate"], ["models"],
                 ["team", "list"], ["profile", "list"], ["snapshot", "list"], ["freeze"]):
        cli(*args)
    assert not broke_home.exists()


def test_generation_bumps_once_per_write(cli, cli_json):
    assert cli("swap", "sonnet=cerebras/gpt-oss-120b", "opus=gemini/gemini-2.5-pro").exit_code == 0
    assert cli("fallback", "sonnet", "haiku").exit_code == 0
    _, listing = cli_json("list")
    assert listing["generation"] == 2
    slots = {row["slot"]: row for row in listing["slots"]}
    assert slots["sonnet"]["backend"] == "cerebras/gpt-oss-120b"
    assert slots["opus"]["backend"] == "gemini/gemini-2.5-pro"
    assert slots["sonnet"]["fallbacks"] == ["haiku"]


def test_snapshots_save_list_restore_and_keep_the_last_20(cli, cli_json):
    assert cli("swap", "sonnet", "cerebras/gpt-oss-120b").exit_code == 0
    saved = cli("snapshot", "save", "--note", "cerebras era")
    assert saved.exit_code == 0 and "snapshot 1 saved" in saved.stdout
    assert cli("swap", "sonnet", "gemini/gemini-2.5-pro").exit_code == 0
    restored = cli("snapshot", "restore", "1")
    assert restored.exit_code == 0
    _, listing = cli_json("list")
    assert {r["slot"]: r["backend"] for r in listing["slots"]}["sonnet"] == "cerebras/gpt-oss-120b"
    assert listing["generation"] == 3  # a restore is a new generation, never a step back
    _, snaps = cli_json("snapshot", "list")
    assert [s["note"] for s in snaps] == ["cerebras era", "before restore of snapshot 1"]
    assert snaps[1]["generation"] == 2

    for _ in range(25):
        assert cli("snapshot", "save").exit_code == 0
    _, snaps = cli_json("snapshot", "list")
    assert len(snaps) == 20
    assert [s["id"] for s in snaps] == list(range(8, 28))


def test_migration_hook_upgrades_old_files_and_keeps_the_original(broke_home, cli, cli_json, monkeypatch):
    old = SCHEMA_VERSION - 1

    def rename_default_slot_key(data):
        data["slots"] = {name: {"backend": entry.pop("model")} for name, entry in data["slots"].items()}
        return data

    monkeypatch.setitem(migrations.MIGRATIONS, old, rename_default_slot_key)
    broke_home.mkdir(parents=True)
    path = broke_home / "state.toml"
    path.write_text(f'schema_version = {old}\ngeneration = 4\n[slots.sonnet]\nmodel = "cerebras/gpt-oss-120b"\n')
    original = path.read_bytes()

    code, routed = cli_json("route", "sonnet")  # read: migrated in memory, file untouched
    assert routed["candidates"][0]["backend"] == "cerebras/gpt-oss-120b"
    assert path.read_bytes() == original

    assert cli("fallback", "sonnet", "haiku").exit_code == 0  # write: migrated on disk
    state = StateStore(broke_home).load()
    assert state.schema_version == SCHEMA_VERSION and state.generation == 5
    _, snaps = cli_json("snapshot", "list")
    assert snaps[0]["note"] == f"before migration from schema {old}"
    snapshot = (broke_home / "snapshots" / "000001.toml").read_text()
    assert 'model = "cerebras/gpt-oss-120b"' in snapshot


def test_a_schema_without_a_migration_step_is_refused(broke_home, cli):
    broke_home.mkdir(parents=True)
    (broke_home / "state.toml").write_text(f"schema_version = {SCHEMA_VERSION - 1}\n")
    result = cli("list")
    assert result.exit_code == 1 and "too old to migrate" in result.stderr


HEAVY = ["litellm", "mlx", "mlx_lm", "sklearn", "uvicorn", "starlette", "httpx"]
WRITE_ONLY = ["filelock", "tomli_w", "broke.changes", "broke.presets", "rich.table"]


def test_route_imports_nothing_heavy(broke_home):
    probe = textwrap.dedent("""
        import json, sys
        from broke.cli.main import app
        from typer.testing import CliRunner
        result = CliRunner().invoke(app, ["route", "sonnet"])
        print(json.dumps({"code": result.exit_code, "modules": sorted(sys.modules)}))
    """)
    env = {"BROKE_HOME": str(broke_home), "ANTHROPIC_API_KEY": "placeholder", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    report = json.loads(out.stdout)
    assert report["code"] == 0
    loaded = set(report["modules"])
    for name in HEAVY + WRITE_ONLY:
        assert name not in loaded, f"`broke route` imported {name}"
