"""The `/admin/v1` control API on a real gateway: every path its OpenAPI document lists, the admin token
(never the client's), and changes that mean what the CLI's mean (same errors, same generation)."""
from __future__ import annotations

import json
import stat

import httpx
import pytest
from typer.testing import CliRunner

from broke.cli.main import app
from broke.control.runfiles import TokenStore
from broke.presets import profiles
from conftest import add_fake_backends, module_home, run_cli, serving
from fake_provider import FakeProvider

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    home = tmp_path_factory.mktemp("admin") / "home"
    fake = FakeProvider().start()
    with module_home(home):
        add_fake_backends(home, fake, "model-a", "model-b")
        run_cli("swap", "sonnet=fake/model-a", "opus=fake/model-b")
        run_cli("profile", "new", "bots", "--slots", "haiku", "--rpm", "5")
        try:
            with serving() as (port, token):
                admin = json.loads(run_cli("connect", "--admin", "--json").stdout)["admin_token"]
                client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
                yield {"home": home, "fake": fake, "http": client, "token": token, "admin": admin, "port": port}
                client.close()
        finally:
            fake.stop()


@pytest.fixture
def api(gw, monkeypatch):
    monkeypatch.setenv("BROKE_HOME", str(gw["home"]))
    run_cli("freeze", "off")

    def call(method: str, path: str, body: object = None, token: str | None = None,
             headers: dict[str, str] | None = None) -> httpx.Response:
        auth = {"authorization": f"Bearer {gw['admin'] if token is None else token}"} if token != "" else {}
        return gw["http"].request(method, f"/admin/v1{path}", json=body, headers={**auth, **(headers or {})})

    return call


def generation(api) -> int:
    return api("GET", "/state").json()["generation"]


def route_backend(slot: str) -> str:
    result = CliRunner().invoke(app, ["route", slot, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["candidates"][0]["backend"]


#: One request per operation of the document: (path parameters, body, expected status).
EXAMPLES: dict[tuple[str, str], tuple[dict[str, str], object, int]] = {
    ("get", "/admin/v1/state"): ({}, None, 200),
    ("put", "/admin/v1/frozen"): ({}, {"frozen": False}, 200),
    ("get", "/admin/v1/slots"): ({}, None, 200),
    ("get", "/admin/v1/slots/{slot}"): ({"slot": "sonnet"}, None, 200),
    ("put", "/admin/v1/slots/{slot}"): ({"slot": "opus"}, {"backend": "fake/model-b", "fallbacks": ["sonnet"]}, 200),
    ("get", "/admin/v1/teams"): ({}, None, 200),
    ("post", "/admin/v1/teams/{name}/load"): ({"name": "demo"}, None, 200),
    ("get", "/admin/v1/profiles"): ({}, None, 200),
    ("post", "/admin/v1/profiles/{name}/load"): ({"name": "solo"}, None, 200),
    ("get", "/admin/v1/policies/keys"): ({}, None, 200),
    ("put", "/admin/v1/policies/keys/{provider}"): ({"provider": "openrouter"}, {"mode": "round_robin"}, 200),
    ("get", "/admin/v1/policies/models"): ({}, None, 200),
    ("put", "/admin/v1/policies/models/{slot}"): (
        {"slot": "gpt54"}, {"mode": "priority_order", "retries": 1, "cooldown_s": 10}, 200),
    ("get", "/admin/v1/keys"): ({}, None, 200),
    ("put", "/admin/v1/keys/{key}"): ({"key": "FAKE_API_KEY_2"}, {"status": "auth_failed"}, 200),
    ("get", "/admin/v1/models"): ({}, None, 200),
    ("put", "/admin/v1/models/{backend}"): ({"backend": "fake/model-b"}, {"status": "incompatible"}, 200),
    ("get", "/admin/v1/workers"): ({}, None, 200),
    ("get", "/admin/v1/nodes"): ({}, None, 200),
    ("get", "/admin/v1/health"): ({}, None, 200),
    ("get", "/admin/v1/metrics"): ({}, None, 200),
    ("get", "/admin/v1/openapi.json"): ({}, None, 200),
}


def test_every_path_of_the_openapi_document_answers(api, gw):
    document = gw["http"].get("/admin/v1/openapi.json").json()
    assert document["openapi"].startswith("3.")
    operations = {(method, path) for path, item in document["paths"].items() for method in item}
    assert operations == set(EXAMPLES)
    schemas = document["components"]["schemas"]
    for (method, path), (params, body, status) in EXAMPLES.items():
        operation = document["paths"][path][method]
        assert {p["name"] for p in operation.get("parameters", [])} == set(params)
        if body is not None:  # the example fits the documented body
            name = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].split("/")[-1]
            assert set(body) <= set(schemas[name]["properties"])
        answer = api(method.upper(), path.removeprefix("/admin/v1").format(**params), body)
        assert answer.status_code == status, (method, path, answer.text)
        assert str(answer.status_code) in operation["responses"]
    # back as the other tests expect it
    run_cli("swap", "sonnet=fake/model-a", "opus=fake/model-b")
    run_cli("model-state", "set", "fake/model-b", "healthy")
    run_cli("key-state", "set", "FAKE_API_KEY_2", "healthy")


def test_put_slot_is_one_generation_and_broke_route_agrees_at_once(api):
    before = generation(api)
    answer = api("PUT", "/slots/sonnet", {"backend": "fake/model-b", "fallbacks": ["fake/model-a"]})
    assert answer.status_code == 200 and answer.json() == {"generation": before + 1}
    assert route_backend("sonnet") == "fake/model-b"
    row = api("GET", "/slots/sonnet").json()
    assert (row["backend"], row["fallbacks"]) == ("fake/model-b", ["fake/model-a"])
    assert row["chosen"].startswith("fake/model-b")
    api("PUT", "/slots/sonnet", {"backend": "fake/model-a", "fallbacks": []})
    assert route_backend("sonnet") == "fake/model-a"


@pytest.mark.parametrize("path, body, status, fragment", [
    ("/slots/nonesuch", {"backend": "fake/model-a"}, 404, "unknown slot 'nonesuch'"),
    ("/slots/sonnet", {"backend": "nope/none"}, 400, "unknown backend 'nope/none'"),
    ("/slots/sonnet", {"fallbacks": ["sonnet"]}, 400, "cannot fall back to itself"),
    ("/slots/sonnet", {}, 400, "give a backend, fallbacks, or both"),
    ("/slots/sonnet", {"backend": 3}, 400, "'backend' must be a string"),
    ("/slots/sonnet", {"backend": "fake/model-a", "colour": "red"}, 400, "unknown field(s) colour"),
    ("/slots/sonnet", "not an object", 400, "must be a JSON object"),
    ("/policies/models/sonnet", {"mode": "fastest-ever"}, 400, "'mode' must be one of"),
    ("/policies/models/sonnet", {"retries": -1}, 400, "0 or more"),
    ("/policies/keys/nonesuch", {"mode": "sticky"}, 404, "unknown provider 'nonesuch'"),
    ("/keys/not-a-key", {"status": "blocked"}, 400, "not a key variable name"),
    ("/keys/FAKE_API_KEY", {"status": "incompatible"}, 400, "'status' must be one of"),
    ("/models/nope/none", {"status": "blocked"}, 404, "unknown backend 'nope/none'"),
])
def test_bad_input_is_one_clear_error_and_changes_nothing(api, path, body, status, fragment):
    before = generation(api)
    answer = api("PUT", path, body)
    assert answer.status_code == status, answer.text
    assert fragment in answer.json()["error"]["message"]
    assert generation(api) == before


def test_unknown_team_or_profile_is_404(api):
    for path in ("/teams/nonesuch/load", "/profiles/nonesuch/load"):
        answer = api("POST", path)
        assert answer.status_code == 404 and "unknown" in answer.json()["error"]["message"]


def test_a_frozen_state_refuses_changes_with_409_until_unfrozen(api):
    assert api("PUT", "/frozen", {"frozen": True}).status_code == 200
    before = generation(api)
    answer = api("PUT", "/slots/sonnet", {"backend": "fake/model-b"})
    assert answer.status_code == 409 and "frozen" in answer.json()["error"]["message"]
    assert api("POST", "/teams/demo/load").status_code == 409
    assert generation(api) == before and route_backend("sonnet") == "fake/model-a"
    assert api("PUT", "/frozen", {"frozen": False}).status_code == 200


def test_health_set_by_hand_shows_in_the_cli(api):
    assert api("PUT", "/models/fake/model-b", {"status": "incompatible"}).json()["until"] is None
    rows = {r["name"]: r for r in api("GET", "/models").json()}
    assert rows["fake/model-b"]["status"] == "incompatible"
    cli_rows = json.loads(CliRunner().invoke(app, ["model-state", "--json"]).stdout)
    assert {r["name"]: r["status"] for r in cli_rows}["fake/model-b"] == "incompatible"
    assert api("PUT", "/models/fake/model-b", {"status": "healthy"}).status_code == 200
    api("PUT", "/keys/FAKE_API_KEY_2", {"status": "healthy"})
    keys = {r["name"]: r for r in api("GET", "/keys").json()}
    assert keys["FAKE_API_KEY"]["provider"] == "openai-compatible"
    assert "key-one" not in api("GET", "/keys").text  # names, never values


def test_the_client_token_and_profile_tokens_get_403_no_token_401(api, gw):
    profile_token = TokenStore(gw["home"]).token_for("profile:bots")
    for token in (gw["token"], profile_token):
        for method, path, body in (("GET", "/state", None), ("PUT", "/slots/sonnet", {"backend": "fake/model-b"})):
            answer = api(method, path, body, token=token)
            assert answer.status_code == 403, answer.text
            assert "broke connect --admin" in answer.json()["error"]["message"]
    assert api("GET", "/state", token="").status_code == 401
    assert api("GET", "/state", token="broke-admin-wrong").status_code == 401
    assert route_backend("sonnet") == "fake/model-a"
    # the admin token is no client token either
    chat = gw["http"].post("/v1/chat/completions", json={"model": "sonnet", "messages": []},
                           headers={"authorization": f"Bearer {gw['admin']}"})
    assert chat.status_code == 401


def test_a_foreign_host_name_is_refused(api):
    answer = api("GET", "/state", headers={"host": "attacker.example:4000"})
    assert answer.status_code == 403
    assert api("GET", "/openapi.json", token="", headers={"host": "attacker.example"}).status_code == 403


def test_connect_admin_token_is_its_own_and_kept_0600(gw):
    path = gw["home"] / "run" / "admin_token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == gw["admin"] != gw["token"]
    assert gw["admin"] not in (gw["home"] / "run" / "tokens.json").read_text()
    assert profiles(gw["home"]).get("bots").preset.access.slots == ["haiku"]
