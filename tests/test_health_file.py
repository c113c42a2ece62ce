"""A corrupt health.json: the store's writes replace it with a clean file (keeping it aside), and
`doctor` and `status` report it instead of failing."""
from __future__ import annotations

import json

from broke.health import Health, HealthRecord, HealthStore, HealthTransitions, load_health

BAD = b'{"generation": 7, "models": {"a/b": {"status": "bogus"}}}'


def test_a_write_replaces_a_corrupt_file_with_what_the_writer_knows_and_keeps_the_corrupt_one(broke_home):
    broke_home.mkdir(parents=True, exist_ok=True)
    path = broke_home / "health.json"
    path.write_bytes(BAD)
    known = Health(generation=4, keys={"K": HealthRecord("cooldown", None, "429", 1, 1.0)})
    record = HealthTransitions(broke_home, lambda: known).backend_failed("x/y", "error")
    assert record.status == "cooldown"
    health = load_health(path)
    assert health.generation == 5 and set(health.models) == {"x/y"} and health.keys == known.keys
    (aside,) = broke_home.glob("health.json.corrupt-*")
    assert aside.read_bytes() == BAD


def test_a_second_corruption_is_kept_under_a_new_name(broke_home):
    broke_home.mkdir(parents=True, exist_ok=True)
    path = broke_home / "health.json"
    store = HealthStore(broke_home)
    for junk in (b"\xff\xfe", b"[1, 2"):
        path.write_bytes(junk)
        store.set("models", "x/y", "blocked")
    assert sorted(p.read_bytes() for p in broke_home.glob("health.json.corrupt-*")) == sorted([b"\xff\xfe", b"[1, 2"])
    assert load_health(path).models["x/y"].status == "blocked"


def test_model_state_set_works_over_a_corrupt_file(cli, broke_home):
    broke_home.mkdir(parents=True, exist_ok=True)
    (broke_home / "health.json").write_bytes(BAD)
    done = cli("model-state", "set", "groq/llama-3.3-70b-versatile", "blocked")
    assert done.exit_code == 0, done.output
    assert load_health(broke_home / "health.json").models["groq/llama-3.3-70b-versatile"].status == "blocked"


def test_doctor_and_status_report_a_corrupt_file(cli, cli_json, broke_home):
    broke_home.mkdir(parents=True, exist_ok=True)
    (broke_home / "health.json").write_bytes(BAD)
    code, report = cli_json("doctor", "--static")
    assert code == 1
    found = {f["code"]: f for f in report["findings"]}
    assert found["health_file"]["subject"].endswith("health.json") and found["health_file"]["level"] == "error"
    assert report["resolutions"]  # the rest of doctor still ran
    text = cli("doctor", "--static").output
    assert "health.json" in text and "rewrites the file" in text
    status = cli("status", "--json")
    assert status.exit_code == 0, status.output
    health = json.loads(status.stdout)["health_file"]
    assert health["problem"] and health["kept_aside"] == []
    assert "health.json is unreadable" in cli("status").output
    # once rewritten, both say where the corrupt copy is
    HealthStore(broke_home).set("models", "x/y", "blocked")
    _, report = cli_json("doctor", "--static")
    assert [f["code"] for f in report["findings"] if f["code"].startswith("health")] == ["health_file_kept"]
    assert json.loads(cli("status", "--json").stdout)["health_file"]["kept_aside"]
