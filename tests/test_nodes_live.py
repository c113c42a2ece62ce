"""Nodes joining and leaving a running gateway: a real MLX worker of a second home (tiny model, CPU)
added as a node while the real gateway runs gets traffic, and its answers say where they ran."""
from __future__ import annotations

import httpx
import pytest

from broke.procs import free_port
from conftest import add_fake_backends, run_cli, serving
from fake_provider import FakeProvider

pytestmark = pytest.mark.timeout(600)
ANSWER = "one two three"


def ask(url: str, token: str) -> httpx.Response:
    body = {"model": "haiku", "max_tokens": 16, "messages": [{"role": "user", "content": "what do you say?"}]}
    return httpx.post(url + "/v1/chat/completions", json=body, timeout=60,
                      headers={"authorization": f"Bearer {token}"})


def test_a_node_added_while_the_gateway_runs_gets_traffic_and_drains_when_removed(broke_home, tmp_path,
                                                                                monkeypatch):
    fake = FakeProvider().start()
    worker_home = tmp_path / "studio-home"
    port = free_port()
    try:
        add_fake_backends(broke_home, fake, "cloud")
        run_cli("swap", "haiku=fake/cloud")
        with serving() as (gateway_port, token):
            url = f"http://127.0.0.1:{gateway_port}"
            first = ask(url, token)
            assert first.headers["x-broke-backend"] == "fake/cloud"
            assert "x-broke-node" not in first.headers  # not a worker's answer
            # a worker on another home (another machine's), behind a token
            monkeypatch.setenv("BROKE_HOME", str(worker_home))
            run_cli("local", "make-tiny", str(tmp_path / "tiny-n"), "--answer", ANSWER, "--add", "tiny-n")
            run_cli("worker", "start", "tiny-n", "--host", "127.0.0.2", "--port", str(port), "--token", "node-secret")
            monkeypatch.setenv("BROKE_HOME", str(broke_home))
            with (broke_home / ".env").open("a") as env:
                env.write("NODE_TOKEN=node-secret\n")  # the running gateway was started without it
            added = run_cli("node", "add", "studio", f"http://127.0.0.2:{port}/v1", "--model", "tiny-n",
                            "--token-env", "NODE_TOKEN")
            assert "restart" not in added.stdout
            run_cli("swap", "haiku=mlx/tiny-n")
            run_cli("fallback", "haiku", "fake/cloud")
            answer = ask(url, token)  # the very next request sees the node (a new state generation)
            assert answer.status_code == 200, answer.text
            assert answer.headers["x-broke-node"] == "studio"
            assert answer.headers["x-broke-replica"] == f"127.0.0.2:{port}"
            assert answer.headers["x-broke-backend"] == "mlx/tiny-n"
            assert ANSWER in answer.json()["choices"][0]["message"]["content"]
            assert "node-secret" not in answer.text
            metrics = httpx.get(url + "/metrics", timeout=10).text
            assert (f'broke_replica_requests_total{{backend="mlx/tiny-n",node="studio",'
                    f'replica="127.0.0.2:{port}",status="200"}}') in metrics
            recent = httpx.get(url + "/ui/api/traffic", headers={"authorization": f"Bearer {token}"}).json()["recent"]
            assert recent[-1]["node"] == "studio" and recent[-1]["replica"] == f"127.0.0.2:{port}"
            # removed: the next requests go to the fallback, none to the node
            run_cli("node", "remove", "studio")
            after = [ask(url, token) for _ in range(3)]
            assert [r.headers["x-broke-backend"] for r in after] == ["fake/cloud"] * 3
            assert all("x-broke-node" not in r.headers for r in after)
    finally:
        monkeypatch.setenv("BROKE_HOME", str(worker_home))
        run_cli("worker", "stop", "tiny-n")
        fake.stop()


def test_a_removed_node_drains_its_requests_in_flight_finish():
    """The pool's own bookkeeping: a node removed while it serves gets no new request; the one in
    flight ends normally (its lease is released), and a node added later joins the pool."""
    from broke.gateway.load import LOCAL, Seat, WorkerLoad
    from broke.health import Health

    here, studio = "http://127.0.0.1:9001/v1", "http://10.0.0.7:8081/v1"
    load = WorkerLoad({})
    changes = load.refresh({"mlx/m": [here]}, {studio: Seat("mlx/m", "studio", "NODE_TOKEN")})
    assert sorted(changes) == sorted([f"{here} joined mlx/m", f"{studio} joined mlx/m"])
    assert (load.where(here), load.where(studio)) == (LOCAL, "studio")
    lease = load.acquire("mlx/m", studio)
    assert load.refresh({"mlx/m": [here]}, {}) == [f"{studio} left mlx/m"]
    assert {load.pick("mlx/m", Health(), 0.0, set()) for _ in range(4)} == {here}
    load.release(lease)  # the request in flight finished
    assert load.on_worker[studio] == 0 and load.on_backend["mlx/m"] == 0
    # the only worker of a model removed: nothing is left to send to (the next candidate answers)
    load.refresh({}, {studio: Seat("mlx/n", "studio")})
    assert load.refresh({}, {}) == [f"{studio} left mlx/n"]
    assert load.pick("mlx/n", Health(), 0.0, set()) is None


def test_replicas_take_load_by_their_weight():
    """A machine measured three times as fast takes three requests in flight for the other's one."""
    from broke.gateway.load import WorkerLoad
    from broke.health import Health

    fast, slow = "http://10.0.0.7:8081/v1", "http://10.0.0.8:8081/v1"
    load = WorkerLoad({"mlx/m": [slow, fast]})
    load.weights = {fast: 30.0, slow: 10.0}
    for _ in range(8):
        load.acquire("mlx/m", load.pick("mlx/m", Health(), 0.0, set()))
    assert (load.on_worker[fast], load.on_worker[slow]) == (6, 2)


def test_explain_shows_each_replicas_weight_and_why(broke_home):
    from typer.testing import CliRunner

    from broke.cli.main import app

    run_cli("node", "add", "studio", "http://10.0.0.7:8081/v1", "--model", "m")
    run_cli("node", "add", "mini", "http://10.0.0.8:8081/v1", "--model", "m", "--machine", "abc123")
    run_cli("swap", "haiku=mlx/m")
    out = " ".join(CliRunner().invoke(app, ["explain", "haiku"]).stdout.split())
    assert "pool mlx/m: http://10.0.0.7:8081/v1 weight 1.0 (50% of the traffic when idle)" in out
    assert "node studio: no machine given (`node add --machine`)" in out
    assert "node mini: no baseline of this model there" in out
    bad = CliRunner().invoke(app, ["node", "add", "x", "http://10.0.0.9:1/v1", "--machine", "a b"])
    assert bad.exit_code == 1 and "--machine must be a baseline machine id" in bad.stderr


def baseline(home, machine: str, memory_gib: int, backend: str, size_gib: float, decode_tps: float) -> None:
    """A baseline record as `export-baseline` writes one on a node, imported here (the fields routing reads)."""
    import json as json_

    folder = home / "baselines"
    folder.mkdir(parents=True, exist_ok=True)
    record = {"kind": "broke-baseline", "id": f"b-{machine}", "created_at": "2026-12-01T00:00:00Z",
              "machine": {"id": machine, "memory_bytes": memory_gib * 2**30},
              "models": [{"backend": backend, "identity": {"size_bytes": int(size_gib * 2**30)},
                          "summary": {"decode_tps": decode_tps}}]}
    (folder / f"b-{machine}.json").write_text(json_.dumps(record))


def test_a_node_that_cannot_hold_the_model_is_never_chosen_and_speed_weighs(broke_home):
    from typer.testing import CliRunner

    from broke.cli.main import app
    from broke.gateway.load import WorkerLoad
    from broke.health import Health
    from broke.local.weights import pool_weights
    from broke.state.store import StateStore

    baseline(broke_home, "big", 64, "mlx/m", 10, 40.0)
    baseline(broke_home, "small", 8, "mlx/other", 1, 90.0)
    run_cli("node", "add", "studio", "http://10.0.0.7:8081/v1", "--model", "m", "--machine", "big")
    run_cli("node", "add", "mini", "http://10.0.0.8:8081/v1", "--model", "m", "--machine", "small")
    run_cli("node", "add", "spare", "http://10.0.0.9:8081/v1", "--model", "m")
    run_cli("swap", "haiku=mlx/m")
    weights = pool_weights(broke_home, StateStore(broke_home).load(), {})["mlx/m"]
    assert {url: w.value for url, w in weights.items()} == {
        "http://10.0.0.7:8081/v1": 40.0, "http://10.0.0.8:8081/v1": 0.0, "http://10.0.0.9:8081/v1": 40.0}
    load = WorkerLoad({"mlx/m": list(weights)})
    load.weights = {url: w.value for url, w in weights.items()}
    picked = {load.pick("mlx/m", Health(), 0.0, set()) for _ in range(6)}
    assert "http://10.0.0.8:8081/v1" not in picked and len(picked) == 2
    out = " ".join(CliRunner().invoke(app, ["explain", "haiku"]).stdout.split())
    assert "40.0 tok/s measured on node studio" in out
    assert "node mini cannot hold it: 10.0 GiB of weights, 8 GiB of memory; never chosen" in out


def test_an_advertised_worker_is_discovered_and_added_with_its_token(broke_home, tmp_path, monkeypatch):
    """DNS-SD on this machine's loopback multicast: a real worker announces itself, `node discover`
    lists it, `node add --discovered` takes its URL and model but still needs the token's variable."""
    import json as json_

    from typer.testing import CliRunner

    from broke.cli.main import app

    worker_home, port = tmp_path / "studio-home", free_port()
    monkeypatch.setenv("BROKE_HOME", str(worker_home))
    run_cli("local", "make-tiny", str(tmp_path / "tiny-d"), "--answer", ANSWER, "--add", "tiny-d")
    refused = CliRunner().invoke(app, ["worker", "start", "tiny-d", "--advertise"])
    assert refused.exit_code == 1 and "give it --host and --token" in refused.stderr
    run_cli("worker", "start", "tiny-d", "--host", "127.0.0.2", "--port", str(port), "--token", "node-secret",
            "--advertise")
    try:
        monkeypatch.setenv("BROKE_HOME", str(broke_home))
        found = []
        for _ in range(3):  # the announcement follows the worker's readiness by a moment
            found = [f for f in json_.loads(run_cli("node", "discover", "--json").stdout)
                     if f["name"] == f"tiny-d@{port}"]
            if found:
                break
        assert found and found[0]["model"] == "tiny-d" and found[0]["url"] == f"http://127.0.0.2:{port}/v1"
        assert found[0]["hardware"] and "node-secret" not in json_.dumps(found)
        no_token = CliRunner().invoke(app, ["node", "add", "studio", "--discovered", f"tiny-d@{port}"])
        assert no_token.exit_code == 1 and "discovery grants no access" in no_token.stderr
        run_cli("node", "add", "studio", "--discovered", f"tiny-d@{port}", "--token-env", "NODE_TOKEN")
        node = json_.loads(run_cli("node", "list", "--json").stdout)["studio"]
        assert (node["url"], node["model"], node["token_env"]) == (f"http://127.0.0.2:{port}/v1", "tiny-d",
                                                                 "NODE_TOKEN")
        both = CliRunner().invoke(app, ["node", "add", "x", "http://10.0.0.1:1/v1", "--discovered", "y"])
        assert both.exit_code == 2 and "one of them" in both.stderr
    finally:
        monkeypatch.setenv("BROKE_HOME", str(worker_home))
        run_cli("worker", "stop", "tiny-d")
