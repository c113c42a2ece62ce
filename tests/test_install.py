"""The environment install.sh made is exactly the lock: tools/check_env.py, run as install.sh runs it."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements-dev.lock"


def check_env(lock: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "tools" / "check_env.py"), str(lock)],
                          capture_output=True, text=True, timeout=60)


def test_this_environment_is_exactly_the_dev_lock():
    done = check_env(LOCK)
    assert done.returncode == 0, done.stderr
    assert subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True).returncode == 0


def edited_lock(tmp_path: Path, change) -> Path:
    lines = LOCK.read_text().splitlines(keepends=True)
    path = tmp_path / "edited.lock"
    path.write_text("".join(change(lines)))
    return path


def test_a_package_installed_outside_the_lock_fails(tmp_path):
    """What pip would have resolved by itself (here: rich, dropped from the lock) is reported."""
    lock = edited_lock(tmp_path, lambda lines: [line for line in lines if not line.startswith("rich==")])
    done = check_env(lock)
    assert done.returncode == 1
    assert "unlocked: rich" in done.stderr and "not in the lock" in done.stderr


def test_another_version_than_the_locked_one_fails(tmp_path):
    lock = edited_lock(tmp_path, lambda lines: [
        "rich==0.0.1 \\\n" if line.startswith("rich==") else line for line in lines])
    done = check_env(lock)
    assert done.returncode == 1 and "version: rich" in done.stderr and "pins 0.0.1" in done.stderr


def test_a_locked_package_that_is_not_installed_fails(tmp_path):
    lock = edited_lock(tmp_path, lambda lines: lines + ["no-such-package-broke==1.0 \\\n",
                                                          "    --hash=sha256:" + "0" * 64 + "\n"])
    done = check_env(lock)
    assert done.returncode == 1 and "missing: no-such-package-broke==1.0" in done.stderr


def test_markers_for_other_platforms_are_not_expected_here(tmp_path):
    marker = "sys_platform == 'win32'"
    lock = edited_lock(tmp_path, lambda lines: lines + [f"no-such-package-broke==1.0 ; {marker} \\\n"])
    assert check_env(lock).returncode == 0


def requirements_in(path: Path) -> set[str]:
    """The requirements a requirements .in file lists itself (comments, blank lines and -r includes left out),
    normalised by packaging."""
    from pip._vendor.packaging.requirements import Requirement

    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return {str(Requirement(line)) for line in lines if line and not line.startswith("-")}


def test_pyproject_declares_the_same_dependencies_as_the_requirements_files():
    """One dependency list: a wheel declares what the lock is made from, less the build backend."""
    import tomllib

    from pip._vendor.packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {str(Requirement(r)) for r in project["dependencies"]}
    runtime = {r for r in requirements_in(ROOT / "requirements.in")
               if Requirement(r).name not in {"hatchling", "editables"}}
    assert declared == runtime
    assert {str(Requirement(r)) for r in project["optional-dependencies"]["dev"]} == requirements_in(
        ROOT / "requirements-dev.in")


def test_the_wheel_holds_the_package_and_the_shipped_presets_only(tmp_path):
    """A wheel of broke: the package (with the shipped teams and profiles inside it), none of the checkout's
    dev-only folders, and pyproject's dependencies as its requirements."""
    import tomllib
    import zipfile

    from pip._vendor.packaging.requirements import Requirement

    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True, timeout=120)
    (wheel,) = tmp_path.glob("broke-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"broke", wheel.name.split("-py3")[0] + ".dist-info"}
    shipped = {name.removeprefix("broke/shipped/") for name in names if name.startswith("broke/shipped/")}
    assert shipped == {f"{kind}/{path.name}" for kind in ("teams", "profiles") for path in (ROOT / kind).glob("*.toml")}
    assert "broke/router/data/routing.jsonl.gz" in names and "broke/catalog.toml" in names
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("/METADATA"))).decode()
    requires = {str(Requirement(line.removeprefix("Requires-Dist: "))) for line in metadata.splitlines()
                if line.startswith("Requires-Dist: ") and "extra ==" not in line}
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert requires == {str(Requirement(r)) for r in declared}
