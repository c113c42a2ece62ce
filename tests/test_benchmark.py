"""benchmark-sequential on two tiny models, baseline records, export/import/compare, `fastest` routing."""
from __future__ import annotations

import getpass
import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from jsonschema import Draft202012Validator

from broke.baselines import SCHEMA_FILE, Speed
from broke.health import Health
from broke.routing.resolve import resolve
from broke.state.model import CustomBackend, ModelPolicy, RouterConfig, SlotConfig, State
from tests.conftest import assert_one_error_line, run_cli

FAST, SLOW = "mlx/tiny-fast", "mlx/tiny-slow"


class ServerWatch:
    """Polls the process table for mlx_lm.server processes serving models under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = str(root)
        self.max_alive = 0
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            alive = set()
            for process in psutil.process_iter(["cmdline"]):
                cmdline = process.info["cmdline"] or []
                if "mlx_lm.server" in cmdline:
                    model = cmdline[cmdline.index("--model") + 1]
                    if model.startswith(self.root):
                        alive.add(model)
            self.seen |= alive
            self.max_alive = max(self.max_alive, len(alive))
            self._stop.wait(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """A home with two tiny models (2 and 8 layers), benchmarked once with the suite run once."""
    root = tmp_path_factory.mktemp("bench")
    home = root / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BROKE_HOME", str(home))
        run_cli("local", "make-tiny", str(root / "models" / "fast"), "--add", "tiny-fast", "--seed", "1")
        run_cli("local", "make-tiny", str(root / "models" / "slow"), "--add", "tiny-slow", "--seed", "2",
                "--layers", "8")
        watch = ServerWatch(root / "models")
        try:
            result = run_cli("benchmark-sequential", "--runs", "1", "--json")
        finally:
            watch.stop()
    return {"root": root, "home": home, "record": json.loads(result.stdout), "watch": watch}


@pytest.fixture
def bench_home(measured, monkeypatch):
    monkeypatch.setenv("BROKE_HOME", str(measured["home"]))
    return measured


def test_record_has_positive_figures_for_both_models(measured):
    record = measured["record"]
    assert record["complete"] and record["alone"] and not measured["record"]["interrupted"]
    assert [m["backend"] for m in record["models"]] == [FAST, SLOW]
    for model in record["models"]:
        assert model["complete"] and model["errors"] == [], model["errors"]
        assert model["load_s"] > 0 and model["peak_memory_bytes"] > 10 * 2**20
        assert model["identity"]["size_bytes"] > 0 and len(model["identity"]["weights_sha256"]) == 64
        assert [p["name"] for p in model["prompts"]] == ["short-chat", "long-prefill", "code"]
        for prompt in model["prompts"]:
            assert prompt["runs"] == 1 and prompt["errors"] == 0
            for metric in ("ttft_s", "prefill_tps", "decode_tps", "total_s", "prompt_tokens"):
                assert prompt[metric]["min"] > 0, (model["backend"], prompt["name"], metric)
        assert all(value > 0 for value in model["summary"].values())
    long_prompt = record["models"][0]["prompts"][1]
    assert long_prompt["prompt_tokens"]["median"] > 1000  # a long-context prefill, really
    fast, slow = (m["summary"]["decode_tps"] for m in record["models"])
    assert fast > slow  # 8 layers decode slower than 2


def test_models_were_never_loaded_together(measured):
    first, second = (m["worker"] for m in measured["record"]["models"])
    assert first["stopped_at"] <= second["started_at"]
    watch = measured["watch"]
    assert len(watch.seen) == 2 and watch.max_alive == 1  # the process table agrees
    assert not list((measured["home"] / "run" / "workers").glob("*.json"))  # nothing left running


def test_saved_record_validates_against_its_schema(measured):
    saved = json.loads(Path(measured["record"]["path"]).read_text())
    Draft202012Validator(json.loads(SCHEMA_FILE.read_text())).validate(saved)
    assert oct(Path(measured["record"]["path"]).stat().st_mode & 0o777) == "0o600"


def _absolute_paths(text: str) -> list[str]:
    return re.findall(r"(?:^|[\s\"'(=:])(/[A-Za-z0-9._-]+/[^\s\"']*)", text)


def test_export_has_no_paths_or_user_name(bench_home, cli, tmp_path):
    baselines = bench_home["home"] / "baselines"
    record = json.loads(Path(bench_home["record"]["path"]).read_text())
    user = getpass.getuser()
    # an error message that names this machine's paths and user, as real ones can
    record["models"][0]["errors"] = [f"worker log at {bench_home['home']}/run/worker.log (user {user})",
                                     f"see {Path.home()}/models/x"]
    record["id"] = record["id"][:-6] + "abcdef"
    (baselines / f"{record['id']}.json").write_text(json.dumps(record))
    out = tmp_path / "shared.json"
    result = cli("export-baseline", "-o", str(out), "--id", record["id"])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert _absolute_paths(text) == []
    assert str(bench_home["root"]) not in text and str(Path.home()) not in text
    assert not re.search(rf"(?<![A-Za-z0-9]){re.escape(user)}(?![A-Za-z0-9])", text)
    assert "worker.log" in text  # the message stays useful
    Draft202012Validator(json.loads(SCHEMA_FILE.read_text())).validate(json.loads(text))
    os.unlink(baselines / f"{record['id']}.json")


def test_import_list_show_compare_on_another_home(bench_home, cli, tmp_path, monkeypatch):
    shared = tmp_path / "from-elsewhere.json"
    assert cli("export-baseline", "-o", str(shared)).exit_code == 0
    other = json.loads(shared.read_text())
    other["id"] = other["id"][:-6] + "012345"
    other["machine"] |= {"id": "m-0123456789ab", "chip": "Apple M9", "label": "studio"}
    other_file = tmp_path / "studio.json"
    other_file.write_text(json.dumps(other))
    monkeypatch.setenv("BROKE_HOME", str(tmp_path / "fresh"))
    result = cli("baseline", "import", str(shared), str(other_file))
    assert result.exit_code == 0, result.output
    assert "imported 2 baseline(s)" in result.output
    again = cli("baseline", "import", str(shared))
    assert "imported 0" in again.output and "already had" in again.output
    listed = json.loads(cli("baseline", "list", "--json").stdout)
    assert len(listed) == 2 and {r["models"][0] for r in listed} == {FAST}
    assert cli("baseline", "show", other["id"]).exit_code == 0
    compared = json.loads(cli("baseline", "compare", "--json").stdout)
    assert compared["models"] == [FAST, SLOW] and "studio" in compared["machines"] and len(compared["machines"]) == 2
    assert len({c["machine"] for c in compared["cells"]}) == 2
    table = cli("baseline", "compare", "--metric", "ttft")
    assert table.exit_code == 0 and "studio" in table.output and "tiny-slow" in table.output
    assert cli("baseline", "remove", other["id"]).exit_code == 0
    listed = json.loads(cli("baseline", "list", "--json").stdout)
    assert [r["id"] for r in listed] == [json.loads(shared.read_text())["id"]]
    assert_one_error_line(cli("baseline", "remove", other["id"]), "no baseline with id")
    plot = tmp_path / "compare.png"
    drawn = cli("baseline", "compare", "--plot", str(plot))
    assert drawn.exit_code == 0, drawn.output
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_import_refuses_bad_files_and_imports_nothing(bench_home, cli, tmp_path, monkeypatch):
    good = tmp_path / "good.json"
    assert cli("export-baseline", "-o", str(good)).exit_code == 0
    record = json.loads(good.read_text())
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps({**record, "schema_version": 2}))
    truncated = tmp_path / "truncated.json"
    truncated.write_text(good.read_text()[:200])
    wrong = tmp_path / "wrong.json"
    broken = json.loads(good.read_text())
    broken["models"][0]["summary"]["decode_tps"] = "fast"
    wrong.write_text(json.dumps(broken))
    monkeypatch.setenv("BROKE_HOME", str(tmp_path / "fresh"))
    assert_one_error_line(cli("baseline", "import", str(good), str(newer)), "newer.json", "newer broke",
                          "nothing was imported")
    assert_one_error_line(cli("baseline", "import", str(good), str(truncated)), "truncated.json", "not JSON")
    assert_one_error_line(cli("baseline", "import", str(wrong)), "wrong.json", "models/0/summary/decode_tps")
    assert_one_error_line(cli("baseline", "import", str(tmp_path / "absent.json")), "no such file")
    assert json.loads(cli("baseline", "list", "--json").stdout) == []


def test_fastest_policy_and_explain_use_the_measurements(bench_home, cli, cli_json):
    assert cli("swap", "subagent", SLOW).exit_code == 0
    assert cli("fallback", "subagent", FAST).exit_code == 0
    assert cli_json("route", "subagent")[1]["chosen"]["backend"] == SLOW
    result = cli("model-policy", "subagent", "--mode", "fastest")
    assert result.exit_code == 0 and "2 of 2" in result.output
    code, routed = cli_json("route", "subagent")
    assert code == 0 and routed["chosen"]["backend"] == FAST
    explained = cli("explain", "subagent")
    assert "tok/s" in explained.output and "first token" in explained.output
    _, data = cli_json("explain", "subagent")
    speeds = {c["backend"]: c["decode_tps"] for c in data["candidates"]}
    assert speeds[FAST] > speeds[SLOW] > 0
    assert cli("model-policy", "subagent", "--mode", "ordered").exit_code == 0


def test_fastest_orders_within_each_tier_only():
    state = State(slots={"auto": SlotConfig("mlx/basic-slow")},
                  router=RouterConfig(tiers={"basic": ["mlx/b-slow", "mlx/b-fast", "mlx/b-unmeasured"],
                                             "premium": ["mlx/p-fastest"]}),
                  model_policy={"auto": ModelPolicy(mode="fastest")})
    for name in ("b-slow", "b-fast", "b-unmeasured", "p-fastest", "basic-slow"):
        state.backends[f"mlx/{name}"] = CustomBackend("mlx", "/models/" + name, pinned=True)
    speeds = {"mlx/b-slow": Speed(10.0, 0.1, "b"), "mlx/b-fast": Speed(50.0, 0.1, "b"),
              "mlx/p-fastest": Speed(900.0, 0.1, "b")}
    resolution = resolve("auto", state, Health(), env={}, now=0.0, p_strong=0.0, speeds=speeds)
    assert [c.backend for c in resolution.candidates] == [
        "mlx/b-fast", "mlx/b-slow", "mlx/b-unmeasured", "mlx/p-fastest", "mlx/basic-slow"]
    assert resolution.chosen.decode_tps == 50.0


def test_validate_warns_of_fastest_without_measurements(cli, cli_json):
    assert cli("model-policy", "haiku", "--mode", "fastest").exit_code == 0
    _, report = cli_json("validate")
    assert any(f["code"] == "unmeasured" and f["subject"] == "haiku" for f in report["findings"])


def test_demo_model_can_be_measured_on_a_fresh_home(cli_json, broke_home):
    code, record = cli_json("benchmark-sequential", "--add", "broke-demo", "--runs", "1")
    assert code == 0
    model = record["models"][0]
    assert model["backend"] == "mlx/broke-demo" and model["complete"], model["errors"]
    assert model["summary"]["ttft_s"] > 0 and model["identity"]["model_type"] == "llama"
    # Everything the demo made under the home (models/, the model's files, run/) is private.
    assert (broke_home / "models" / "broke-demo" / "config.json").is_file()
    modes = {str(p.relative_to(broke_home)): stat.S_IMODE(p.stat().st_mode) for p in broke_home.rglob("*")}
    assert {p: m for p, m in modes.items() if m != (0o700 if (broke_home / p).is_dir() else 0o600)} == {}


def test_bad_benchmark_arguments(cli):
    assert cli("benchmark-sequential", "--suite", "huge").exit_code == 2
    assert_one_error_line(cli("benchmark-sequential"), "no local models")
    assert_one_error_line(cli("benchmark-sequential", "--add", "nosuch"), "unknown local model 'mlx/nosuch'")
    assert_one_error_line(cli("benchmark-sequential", "--backend", "openai/gpt-5"), "gateway")
    assert_one_error_line(cli("export-baseline", "-o", "x.json"), "no baselines")
    assert_one_error_line(cli("baseline", "show", "b-nosuch"), "no baseline with id")
    assert_one_error_line(cli("baseline", "compare", "--metric", "vibes"), "--metric")


def test_corrupt_baseline_file_is_reported_not_replaced(bench_home, cli, tmp_path, monkeypatch):
    monkeypatch.setenv("BROKE_HOME", str(tmp_path / "h"))
    directory = tmp_path / "h" / "baselines"
    directory.mkdir(parents=True)
    (directory / "b-bad.json").write_text("{not json")
    assert_one_error_line(cli("baseline", "list"), "b-bad.json", "not readable JSON")
    assert (directory / "b-bad.json").read_text() == "{not json"
    (directory / "b-bad.json").write_text(json.dumps({"kind": "broke-baseline", "schema_version": 1}))
    assert_one_error_line(cli("baseline", "list"), "b-bad.json", "does not match the baseline schema")
    assert_one_error_line(cli("explain", "sonnet"), "b-bad.json", "not a valid baseline record")


def test_ctrl_c_stops_the_worker_and_keeps_finished_results(tmp_path):
    home = tmp_path / "home"
    env = {**os.environ, "BROKE_HOME": str(home)}
    broke = [str(Path(sys.executable).parent / "broke")]
    for name, layers in (("one", "2"), ("two", "2")):
        subprocess.run([*broke, "local", "make-tiny", str(tmp_path / name), "--add", name, "--layers", layers],
                       env=env, check=True, capture_output=True)
    process = subprocess.Popen([*broke, "benchmark-sequential", "--runs", "3"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:  # wait for the second model's worker
        if any("two" in p.name for p in (home / "run" / "workers").glob("*.json")):
            break
        time.sleep(0.05)
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 130, output
    assert "interrupted" in output and "Traceback" not in output
    record = json.loads(next((home / "baselines").glob("b-*.json")).read_text())
    assert record["complete"] is False
    assert record["models"][0]["backend"] == "mlx/one" and record["models"][0]["complete"]
    assert all(not m["complete"] for m in record["models"][1:])
    assert not list((home / "run" / "workers").glob("*.json"))
    assert not [p for p in psutil.process_iter(["cmdline"]) if str(tmp_path) in " ".join(p.info["cmdline"] or [])]


def test_a_model_not_on_the_machine_fails_the_benchmark(cli, cli_json, broke_home, tmp_path):
    """Nothing measured: exit 1, one error line naming the model, and no record to export by default."""
    import shutil

    gone = tmp_path / "gone"
    assert cli("local", "make-tiny", str(gone), "--add", "gone").exit_code == 0
    shutil.rmtree(gone)
    assert_one_error_line(cli("benchmark-sequential", "--add", "gone", "--runs", "1"), "mlx/gone",
                          "not a model directory")
    assert not list((broke_home / "baselines").glob("b-*.json"))
    assert_one_error_line(cli("export-baseline", "-o", str(tmp_path / "x.json")), "no baselines")
    # One model measured, one missing: the record keeps the measured one, and the command still fails.
    assert cli("local", "make-tiny", str(tmp_path / "here"), "--add", "here").exit_code == 0
    result = cli("benchmark-sequential", "--add", "here", "--add", "gone", "--runs", "1", "--json")
    assert result.exit_code == 1, result.output
    assert "mlx/gone" in result.stderr and "could not be measured" in result.stderr
    record = json.loads(next((broke_home / "baselines").glob("b-*.json")).read_text())
    assert [m["backend"] for m in record["models"] if m["prompts"]] == ["mlx/here"]


def test_export_never_picks_a_failed_record_by_default(bench_home, cli, tmp_path, monkeypatch):
    """A record where nothing was measured (from an older broke, or imported) is never the default."""
    good = json.loads(Path(bench_home["record"]["path"]).read_text())
    failed = json.loads(json.dumps(good))
    failed["id"], failed["created_at"] = good["id"][:-6] + "fa11ed", "2999-01-01T00:00:00Z"
    for model in failed["models"]:
        model.update(complete=False, prompts=[], errors=["model is not on this machine"], load_s=None,
                     peak_memory_bytes=None, worker=None,
                     summary=dict.fromkeys(model["summary"]))
    Draft202012Validator(json.loads(SCHEMA_FILE.read_text())).validate(failed)
    monkeypatch.setenv("BROKE_HOME", str(tmp_path / "h"))
    files = []
    for record in (good, failed):
        files.append(tmp_path / f"{record['id']}.json")
        files[-1].write_text(json.dumps(record))
    assert cli("baseline", "import", *map(str, files)).exit_code == 0
    out = tmp_path / "out.json"
    result = cli("export-baseline", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["id"] == good["id"]
    assert json.loads(cli("baseline", "show", "--json").stdout)["id"] == good["id"]
    assert cli("export-baseline", "-o", str(out), "--id", failed["id"]).exit_code == 0  # asked for by id
