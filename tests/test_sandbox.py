"""Sandbox profiles: the policy and environment, the Seatbelt profile's rules, what this machine enforces,
and real bubblewrap runs of `broke sandbox exec` through a real gateway (hardened and strict)."""
from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from broke.errors import InvalidInputError
from broke.sandbox.policy import Policy, build_policy, sandbox_env
from broke.sandbox.seatbelt import seatbelt_profile
from broke.sandbox.support import SandboxUnavailable, check
from clients import BROKE
from conftest import add_fake_backends, assert_one_error_line, module_home, run_cli, serving
from fake_provider import FakeProvider

SECRET = "sk-fake-provider-secret-0123456789"
ENFORCED = check()
needs_bwrap = pytest.mark.skipif(
    ENFORCED.mechanism != "bwrap" or bool(ENFORCED.profiles["strict"]),
    reason=f"bubblewrap cannot confine here: {ENFORCED.profiles['strict'] or ENFORCED.mechanism}")


def test_sandbox_env_keeps_what_broke_set_and_drops_every_credential():
    env = {"PATH": "/usr/bin", "OPENAI_API_KEY": "broke-token", "GITHUB_TOKEN": "ghp_x", "BROKE_HOME": "/h",
           "AWS_PROFILE": "prod", "NOTES": f"it is {SECRET}", "TMPDIR": "/var/tmp/me", "EDITOR": "vi"}
    inside = sandbox_env(env, kept=["OPENAI_API_KEY"], secrets=[SECRET])
    assert inside == {"PATH": "/usr/bin", "OPENAI_API_KEY": "broke-token", "EDITOR": "vi", "TMPDIR": "/tmp"}


def test_policy_refuses_a_working_directory_holding_the_home_or_inside_brokes(tmp_path):
    home, broke_home = tmp_path / "user", tmp_path / "user" / "broke"
    broke_home.mkdir(parents=True)
    for cwd, fragment in ((tmp_path, "whole home"), (broke_home, "broke's home")):
        with pytest.raises(InvalidInputError, match=fragment):
            build_policy("hardened", client="claude", program="claude", cwd=cwd, broke_home=broke_home,
                         environ={"HOME": str(home)}, gateway_port=4000)


def test_policy_keeps_only_the_clients_own_directories(tmp_path):
    home, work = tmp_path / "user", tmp_path / "work"
    work.mkdir()
    (home / ".claude.json").parent.mkdir(parents=True)
    (home / ".claude.json").write_text("{}")
    policy = build_policy("strict", client="claude", program="claude", cwd=work, broke_home=tmp_path / "b",
                          environ={"HOME": str(home), "PATH": ""}, gateway_port=4123)
    assert set(policy.writable) == {home / ".claude", home / ".claude.json"} and (home / ".claude").is_dir()
    assert policy.gateway_port == 4123 and policy.hidden == ((tmp_path / "b").resolve(),)
    codex = build_policy("hardened", client="codex", program="codex", cwd=work, broke_home=tmp_path / "b",
                         environ={"HOME": str(home), "CODEX_HOME": str(tmp_path / "cx")}, gateway_port=4123)
    assert codex.writable == (tmp_path / "cx",) and codex.gateway_port is None


RULE = re.compile(r'^\((allow|deny) ([a-z*\- ]+?)((?: \(.*\))*)\)$')
FILTER = re.compile(r'\((subpath|literal|remote ip) "([^"]*)"\)')


def seatbelt_decides(profile: str, operation: str, target: str) -> str:
    """What a Seatbelt profile decides for `operation` (file-read, file-write, network-outbound) on a path
    or "host:port": the last matching rule wins, as sandbox-exec applies them (`default`: every operation)."""
    decision = "deny"
    for line in profile.splitlines():
        match = RULE.match(line)
        if not match:
            continue
        action, ops, filters = match.groups()
        if not any(op in (operation, "default") or (op.endswith("*") and operation.startswith(op[:-1]))
                   for op in ops.split()):
            continue
        found = FILTER.findall(filters)
        if not filters.strip() or any(
                (kind == "subpath" and (target == value or target.startswith(value + "/")))
                or (kind == "literal" and target == value) or (kind == "remote ip" and target == value)
                for kind, value in found):
            decision = action
    return decision


def test_seatbelt_profile_rules():
    policy = Policy("strict", Path("/Users/u"), Path("/Users/u/src/app"), writable=(Path("/Users/u/.claude"),),
                    readable=(Path("/Users/u/.npm-global"),), hidden=(Path("/Users/u/Library/broke"),),
                    gateway_port=4000)
    text = seatbelt_profile(policy)
    decide = lambda op, target: seatbelt_decides(text, op, target)  # noqa: E731
    assert decide("file-read", "/Users/u/.ssh/id_ed25519") == "deny"
    assert decide("file-read", "/Users/u/Library/broke/.env") == "deny"
    assert decide("file-write", "/Users/u/Library/broke/state.toml") == "deny"
    assert decide("file-read", "/usr/lib/libc.dylib") == "allow"
    assert decide("file-write", "/usr/local/bin/x") == "deny"
    assert decide("file-write", "/Users/u/src/app/main.py") == "allow"
    assert decide("file-write", "/Users/u/src/other/main.py") == "deny"
    assert decide("file-write", "/Users/u/.claude/settings.json") == "allow"
    assert decide("file-read", "/Users/u/.npm-global/bin/claude") == "allow"
    assert decide("file-write", "/Users/u/.npm-global/bin/claude") == "deny"
    assert decide("network-outbound", "localhost:4000") == "allow"
    assert decide("network-outbound", "localhost:5432") == "deny"
    hardened = seatbelt_profile(Policy("hardened", policy.home, policy.cwd))
    assert seatbelt_decides(hardened, "network-outbound", "example.com:443") == "allow"


def test_an_unsupported_platform_enforces_only_normal():
    support = check("sunos5")
    assert support.mechanism == "none" and support.profiles["normal"] == ""
    with pytest.raises(SandboxUnavailable, match="cannot be enforced on this machine.*refusing to run unconfined"):
        support.require("hardened")


def test_a_profile_this_machine_cannot_enforce_is_refused_before_anything_starts(cli, broke_home, monkeypatch,
                                                                                tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap (nor anything else) to be found
    (tmp_path / "true").symlink_to("/bin/true")
    result = cli("sandbox", "exec", "strict", "--", "true")
    assert_one_error_line(result, "sandbox profile 'strict' cannot be enforced", "bwrap is not installed")
    assert not (broke_home / "run" / "gateway.json").exists()
    assert "strict" in cli("sandbox", "check").stdout and "not enforceable" in cli("sandbox", "check").stdout


def test_default_profile_per_client_is_set_shown_and_used_by_launch_env(cli, cli_json):
    assert cli("sandbox", "default", "claude", "strict").exit_code == 0
    assert cli("sandbox", "default", "claude").stdout.strip() == "claude: strict"
    assert cli_json("launch-env", "claude")[1]["sandbox"] == "strict"
    assert cli_json("launch-env", "codex")[1]["sandbox"] == "normal"
    assert "sandbox: strict" in cli("launch-env", "claude").stdout
    assert_one_error_line(cli("sandbox", "default", "claude", "loose"), "unknown sandbox profile 'loose'", code=2)
    assert_one_error_line(cli("sandbox", "default", "vim", "strict"), "unknown client 'vim'", code=2)
    assert cli("sandbox", "default", "claude", "normal").exit_code == 0
    assert cli_json("launch-env", "claude")[1]["sandbox"] == "normal"


PROBE = """
import json, os, sys, urllib.request
out = {}
def attempt(name, fn):
    try:
        out[name] = ["ok", fn()]
    except Exception as exc:
        out[name] = ["error", type(exc).__name__]
def write(path):
    with open(path, "w") as fh:
        fh.write("written from the sandbox")
def chat():
    request = urllib.request.Request(os.environ["OPENAI_BASE_URL"] + "/chat/completions", method="POST",
        data=json.dumps({"model": "sonnet", "messages": [{"role": "user", "content": "hi"}]}).encode(),
        headers={"authorization": "Bearer " + os.environ["OPENAI_API_KEY"], "content-type": "application/json"})
    return json.load(urllib.request.urlopen(request, timeout=30))["choices"][0]["message"]["content"]
def unix(path):
    import socket
    socket.socket(socket.AF_UNIX).connect(path)
ssh, dotenv, outside, planted, other, host_socket = sys.argv[1:]
attempt("ssh", lambda: open(ssh).read())
attempt("dotenv", lambda: open(dotenv).read())
attempt("write_outside", lambda: write(outside))
attempt("write_home", lambda: write(planted))
attempt("write_system", lambda: write("/usr/broke-sandbox-test"))
attempt("write_cwd", lambda: write("made-inside.txt"))
attempt("gateway", chat)
attempt("other_loopback", lambda: urllib.request.urlopen(other, timeout=5).status)
attempt("host_socket", lambda: unix(host_socket))
out["env"] = dict(os.environ)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    home = tmp_path_factory.mktemp("sandbox") / "home"
    fake = FakeProvider().start()
    with module_home(home):
        add_fake_backends(home, fake, "model-a", keys=(SECRET,))
        run_cli("swap", "sonnet=fake/model-a")
        try:
            with serving() as (port, token):
                yield {"home": home, "fake": fake, "port": port}
        finally:
            fake.stop()


@contextmanager
def host_socket() -> Iterator[Path]:
    """A listening Unix socket of the host where a sandbox's read-only system shows it (a docker.sock,
    say): outside /tmp and $HOME."""
    directory = Path(tempfile.mkdtemp(prefix="broke-test-", dir="/var/tmp"))
    listener = socket.socket(socket.AF_UNIX)
    try:
        listener.bind(str(directory / "service.sock"))
        listener.listen()
        yield directory / "service.sock"
    finally:
        listener.close()
        shutil.rmtree(directory)


def run_probe(gateway, tmp_path: Path, profile: str) -> tuple[dict, dict[str, Path]]:
    """`broke sandbox exec PROFILE -- python probe.py …` from a user's home with a planted ~/.ssh key;
    returns what the probe saw and the host paths it aimed at."""
    user, work = tmp_path / "user", tmp_path / "user" / "src" / "project"
    (user / ".ssh").mkdir(parents=True)
    work.mkdir(parents=True)
    (user / ".ssh" / "id_ed25519").write_text("PRIVATE KEY")
    (user / "notes.txt").write_text("original")
    (work / "probe.py").write_text(PROBE)
    paths = {"ssh": user / ".ssh" / "id_ed25519", "dotenv": gateway["home"] / ".env",
             "outside": tmp_path / "outside.txt", "planted": user / "notes.txt"}
    env = {"PATH": "/usr/bin:/bin", "HOME": str(user), "BROKE_HOME": str(gateway["home"]),
           "BROKE_PORT": str(gateway["port"]), "FAKE_API_KEY": SECRET, "LANG": "C.UTF-8"}
    with host_socket() as socket_path:
        done = subprocess.run([str(BROKE), "sandbox", "exec", profile, "--", sys.executable, "-I", "probe.py",
                               *map(str, paths.values()), gateway["fake"].base_url + "/models", str(socket_path)],
                              env=env, cwd=work, capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), {**paths, "made": work / "made-inside.txt"}


def assert_confined(seen: dict, paths: dict[str, Path]) -> None:
    assert seen["ssh"][0] == "error" and seen["dotenv"][0] == "error"  # the home hidden, broke's home too
    assert seen["write_system"] == ["error", "OSError"]
    assert not paths["outside"].exists()  # written, if at all, into the sandbox's private temp
    assert paths["planted"].read_text() == "original"
    assert seen["write_cwd"][0] == "ok" and paths["made"].read_text() == "written from the sandbox"
    assert not any(SECRET in value for value in seen["env"].values())
    assert "FAKE_API_KEY" not in seen["env"] and "BROKE_HOME" not in seen["env"]
    assert seen["env"]["TMPDIR"] == "/tmp"
    assert seen["host_socket"] == ["error", "ConnectionRefusedError"]  # masked by /dev/null


@needs_bwrap
def test_hardened_hides_the_home_and_keys_and_keeps_writes_in_the_working_directory(gateway, tmp_path):
    seen, paths = run_probe(gateway, tmp_path, "hardened")
    assert_confined(seen, paths)
    assert seen["gateway"] == ["ok", "fake:model-a:" + SECRET]
    assert seen["other_loopback"] == ["ok", 200]  # the network as usual


@needs_bwrap
def test_strict_reaches_the_gateway_and_nothing_else(gateway, tmp_path):
    seen, paths = run_probe(gateway, tmp_path, "strict")
    assert_confined(seen, paths)
    assert seen["gateway"] == ["ok", "fake:model-a:" + SECRET]  # through the bridge, to the real gateway
    assert seen["other_loopback"] == ["error", "URLError"]  # the fake provider, on the host's loopback
    assert seen["env"]["OPENAI_BASE_URL"] == f"http://127.0.0.1:{gateway['port']}/v1"


@needs_bwrap
def test_the_confined_commands_exit_status_is_brokes(gateway, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "user"), "BROKE_HOME": str(gateway["home"])}
    done = subprocess.run([str(BROKE), "sandbox", "exec", "strict", "--", "sh", "-c", "exit 7"], env=env,
                          cwd=work, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 7, done.stderr


def test_bwrap_command_line_hides_brokes_home_wherever_it_is_and_bridges_strict(tmp_path):
    from broke.sandbox.bwrap import INNER_FORWARDER, INNER_SOCKET, bwrap_argv

    work = tmp_path / "work"
    elsewhere, inside_work, under_tmp = Path("/usr/share"), work / ".broke", tmp_path / "other-broke"
    for path in (inside_work, under_tmp):
        path.mkdir(parents=True)
    hardened = Policy("hardened", Path("/home/u"), work, hidden=(elsewhere, inside_work, under_tmp))
    argv = bwrap_argv("bwrap", hardened, ["claude", "-p", "hi"])
    assert argv[-4:] == ["--", "claude", "-p", "hi"] and "--unshare-net" not in argv
    pairs = list(zip(argv, argv[1:], strict=False))
    assert ("--tmpfs", "/home/u") in pairs and ("--tmpfs", "/tmp") in pairs and ("--ro-bind", "/") in pairs
    assert ("--tmpfs", str(elsewhere)) in pairs and ("--tmpfs", str(inside_work)) in pairs
    assert str(under_tmp) not in argv  # already gone with the host's /tmp
    assert argv.index(str(inside_work)) > argv.index("--bind")  # mounted over the working directory's bind
    strict = Policy("strict", Path("/home/u"), work, gateway_port=4321)
    argv = bwrap_argv("bwrap", strict, ["claude"], socket=Path("/run/b/gateway.sock"))
    assert "--unshare-net" in argv and ("--bind", "/run/b/gateway.sock") in list(zip(argv, argv[1:], strict=False))
    command = argv[argv.index("--") + 1:]
    assert command[1:] == ["-I", "-S", INNER_FORWARDER, "4321", INNER_SOCKET, "--", "claude"]
    with pytest.raises(ValueError):
        bwrap_argv("bwrap", strict, ["claude"])


def test_the_hosts_unix_sockets_are_read_from_the_kernels_table(tmp_path):
    from broke.sandbox.policy import unix_sockets

    table = tmp_path / "unix"
    table.write_text("Num       RefCount Protocol Flags    Type St Inode Path\n"
                     "0000: 00000002 00000000 00010000 0001 01 4277 /run/docker.sock\n"
                     "0000: 00000002 00000000 00010000 0001 01 4278 @abstract-name\n"
                     "0000: 00000003 00000000 00000000 0001 03 4279\n"
                     "0000: 00000002 00000000 00010000 0001 01 4280 /var/run/my app.sock\n")
    assert unix_sockets(table) == [Path("/run/docker.sock"), Path("/var/run/my app.sock")]
    assert unix_sockets(tmp_path / "missing") == []
