"""Attack run: damaged state files, concurrent and killed writers, upstream faults, hostile requests, load.

Run with the venv's interpreter:

    .venv/bin/python perf/attack.py [--writers 8] [--writes 40] [--kills 60] [--loads 3] [--load-requests 1000]

Each part prints what it tried and what went wrong; the run exits 1 if anything did:
  state     15 kinds of damaged state.toml: a read (`route`) and a write (`freeze on`) must each be refused with
            one line and exit 1, leaving the file byte for byte as it was; `snapshot restore` must then recover,
            keeping the damaged file aside.
  writers   W processes × N `backend add` each, at once: every backend must be in the state (no lost update).
  kills     `broke backend add` SIGKILLed at random moments: the state must always parse and hold every backend
            whose command finished; temp files a killed writer left are gone after the next write.
  faults    a real gateway over the fake provider: every failure mode × stream or not × chat or messages, once on
            a one-backend slot (the error reaches the client in its API's shape, never a 500 of broke's own,
            never the key) and once with a healthy second backend (answered by it).
  hostile   malformed, oversized, unauthenticated and rebinding requests: each refused with its 4xx, no 5xx.
  load      L × R concurrent requests: every one answered once (no request lost or duplicated upstream).
The CLI fuzz (1,500 command lines) runs in the test suite: tests/test_cli_fuzz.py.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from harness import BROKE_EXE, ROOT, broke, free_port, must, print_machine_and_command

sys.path.insert(0, str(ROOT / "tests"))
from fake_provider import FAILURE_MODES, FakeProvider

KEY = "sk-attack-0123456789abcdef"
#: Failures that may happen after a stream's first bytes reached the client: too late for another backend.
MIDSTREAM = ("cut", "stall", "cut-stream")
CHAT = {"model": "sonnet", "messages": [{"role": "user", "content": "hi"}]}
MESSAGES = {"model": "sonnet", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}


def new_home(root: Path, name: str) -> Path:
    home = root / name
    home.mkdir(mode=0o700)
    (home / ".env").write_text(f"FAKE_API_KEY={KEY}\n")
    os.chmod(home / ".env", 0o600)
    return home


def started_gateway(root: Path, fake: FakeProvider, name: str, models: tuple[str, ...] = ("a",),
                    first_byte_timeout_s: int | None = None) -> tuple[Path, int, str]:
    """A new home whose `sonnet` is fake/a (with backends fake/MODEL for `models`), its gateway started:
    (home, port, client token)."""
    home = new_home(root, name)
    for model in models:
        must(broke(home, "backend", "add", f"fake/{model}", "--provider", "openai-compatible", "--api-base",
                   fake.base_url, "--model", model, "--key-env", "FAKE_API_KEY"), "backend add")
    must(broke(home, "swap", "sonnet=fake/a"), "swap")
    port = free_port()
    if first_byte_timeout_s is None:
        must(broke(home, "start", "--port", str(port), "--wait"), "start")
    else:
        os.environ["BROKE_FIRST_BYTE_TIMEOUT"] = str(first_byte_timeout_s)
        try:
            must(broke(home, "start", "--port", str(port), "--wait"), "start")
        finally:
            del os.environ["BROKE_FIRST_BYTE_TIMEOUT"]
    return home, port, json.loads(must(broke(home, "connect", "--json"), "connect"))["token"]


def one_line_refusal(result: subprocess.CompletedProcess[str]) -> bool:
    """Exit 1, no traceback, and the error in one line."""
    said = (result.stdout + result.stderr).strip()
    return result.returncode == 1 and "Traceback" not in said and len(said.splitlines()) == 1


def damaged_states(text: str) -> dict[str, bytes | None]:
    """The damage done to a good state file, by kind (None: a directory in its place)."""
    data, lines = text.encode(), text.splitlines(keepends=True)
    middle = len(lines) // 2
    return {
        "empty": b"",
        "whitespace": b"\n  \n\t\n",
        "first line only": lines[0].encode(),
        "cut in half": data[: len(data) // 2],
        "cut before the end line": "".join(lines[:-1]).encode(),
        "random bytes": random.Random(7).randbytes(len(data)),
        "NUL bytes inside": data[:100] + b"\0" * 64 + data[100:],
        "invalid UTF-8": data[:50] + b"\xff\xfe\xc3(" + data[50:],
        "TOML syntax error": "".join(lines[:middle] + ["[[[ not toml\n"] + lines[middle:]).encode(),
        "newer schema": text.replace("schema_version = ", "schema_version = 999 #", 1).encode(),
        "slots of the wrong type": (text.replace("[slots.", "[oldslots.") + "slots = 'all'\n").encode(),
        "generation not a number": text.replace("generation = ", "generation = 'x' #", 1).encode(),
        "duplicate table": "".join(lines[:middle] + ["[frozen_table]\n[frozen_table]\n"] + lines[middle:]).encode(),
        "a directory": None,
        "a dangling symlink": b"->",
    }


def attack_state(root: Path, base_url: str, errors: list[str]) -> None:
    home = new_home(root, "state")
    for name in ("a", "b"):
        must(broke(home, "backend", "add", f"fake/{name}", "--provider", "openai-compatible", "--api-base",
                   base_url, "--model", name, "--key-env", "FAKE_API_KEY"), "backend add")
    must(broke(home, "swap", "sonnet=fake/a"), "swap")
    must(broke(home, "fallback", "sonnet", "fake/b"), "fallback")
    must(broke(home, "snapshot", "save"), "snapshot save")
    snapshot = str(json.loads(must(broke(home, "snapshot", "list", "--json"), "snapshot list"))[-1]["id"])
    state = home / "state.toml"
    good = state.read_text()
    refused = restored = 0
    kinds = damaged_states(good)
    for kind, damage in kinds.items():
        for leftover in home.glob("state.toml*"):
            shutil.rmtree(leftover) if leftover.is_dir() and not leftover.is_symlink() else leftover.unlink()
        if damage is None:
            state.mkdir()
        elif damage == b"->":
            state.symlink_to(home / "missing.toml")
        else:
            state.write_bytes(damage)
        before = None if damage is None or damage == b"->" else state.read_bytes()
        results = [broke(home, "route", "sonnet"), broke(home, "freeze", "on")]
        intact = before is None or state.read_bytes() == before
        if all(one_line_refusal(r) for r in results) and intact:
            refused += 1
        else:
            errors.append(f"state '{kind}': exits {[r.returncode for r in results]}, file intact: {intact}: "
                          + " | ".join((r.stdout + r.stderr).strip()[:150] for r in results))
        recovered = broke(home, "snapshot", "restore", snapshot)
        kept = list(home.glob("state.toml.damaged-*"))
        if recovered.returncode == 0 and broke(home, "route", "sonnet").returncode == 0 and (kept or damage is None):
            restored += 1
        else:
            errors.append(f"state '{kind}': restore exit {recovered.returncode}, damaged copy kept: {bool(kept)}: "
                          f"{(recovered.stdout + recovered.stderr).strip()[:200]}")
    print(f"state    {len(kinds)} damaged kinds: {refused} refused by a read and a write with the file intact, "
          f"{restored} recovered by `snapshot restore`")


def attack_writers(root: Path, writers: int, writes: int, base_url: str, errors: list[str]) -> None:
    home = new_home(root, "writers")
    script = ("import subprocess, sys\n"
              "for n in range(int(sys.argv[2])):\n"
              "    subprocess.run([sys.argv[3], 'backend', 'add', f'fake/w{sys.argv[1]}-{n}', '--provider',\n"
              "                    'openai-compatible', '--api-base', sys.argv[4], '--model', 'm'], check=True,\n"
              "                   capture_output=True)\n")
    env = {**os.environ, "BROKE_HOME": str(home)}
    started = time.perf_counter()
    children = [subprocess.Popen([sys.executable, "-c", script, str(w), str(writes), str(BROKE_EXE), base_url],
                                 env=env) for w in range(writers)]
    failed = sum(child.wait() != 0 for child in children)
    listed = json.loads(must(broke(home, "models", "--json"), "models"))
    names = {entry["id"] for entry in listed if entry.get("custom")} if isinstance(listed, list) else set()
    expected = {f"fake/w{w}-{n}" for w in range(writers) for n in range(writes)}
    lost = len(expected - names)
    print(f"writers  {writers} processes x {writes} writes in {time.perf_counter() - started:.0f} s: "
          f"{lost} lost updates, {failed} writers failed")
    if lost or failed:
        errors.append(f"writers: {lost} lost updates, {failed} writers failed")


def attack_kills(root: Path, kills: int, base_url: str, errors: list[str]) -> None:
    home = new_home(root, "kills")
    env, rng = {**os.environ, "BROKE_HOME": str(home)}, random.Random(11)
    done: set[str] = set()
    unparseable = lost = 0
    for number in range(kills):
        name = f"fake/k{number}"
        child = subprocess.Popen([str(BROKE_EXE), "backend", "add", name, "--provider", "openai-compatible",
                                  "--api-base", base_url, "--model", "m"], env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.05, 0.6))
        child.send_signal(signal.SIGKILL)  # our own child, by its handle
        if child.wait() == 0:
            done.add(name)
        listed = broke(home, "models", "--json")
        if listed.returncode != 0:
            unparseable += 1
            errors.append(f"kills: state unreadable after kill {number}: {listed.stderr.strip()[:200]}")
            break
        names = {entry["id"] for entry in json.loads(listed.stdout) if entry.get("custom")}
        lost = len(done - names)
    time.sleep(11)  # older than fileio.ORPHAN_AGE_S: the next write removes what killed writers left
    must(broke(home, "backend", "add", "fake/last", "--provider", "openai-compatible", "--api-base", base_url,
               "--model", "m"), "backend add")
    orphans = [p.name for p in home.glob(".state.toml.*.tmp")]
    print(f"kills    {kills} SIGKILLed writers ({len(done)} had finished): {unparseable} unreadable states, "
          f"{lost} finished writes lost, {len(orphans)} temp files left after the next write")
    if lost or orphans:
        errors.append(f"kills: {lost} finished writes lost, orphan temp files {orphans[:3]}")


def leaks(response: httpx.Response) -> bool:
    return KEY in response.text or any(KEY in value for value in response.headers.values())


def client_shape(path: str, response: httpx.Response, stream: bool) -> bool:
    """An error in the client API's own shape (for a stream: an error event or an error body)."""
    text = response.text
    if path.endswith("messages"):
        return '"type":"error"' in text.replace(" ", "") or "event: error" in text
    return '"error"' in text


def attack_faults(root: Path, fake: FakeProvider, errors: list[str]) -> None:
    # a hanging upstream is given up on after 3 s, not 120 s
    home, port, token = started_gateway(root, fake, "faults", ("a", "b"), first_byte_timeout_s=3)
    runs = bad = 0
    modes = [m for m in FAILURE_MODES if m != "hang"] + ["hang"]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120,
                          headers={"authorization": f"Bearer {token}"}) as client:
            for fallback in (False, True):
                must(broke(home, "fallback", "sonnet", *(["fake/b"] if fallback else ["--clear"])), "fallback")
                for mode in modes:
                    for path, body in (("/v1/chat/completions", CHAT), ("/v1/messages", MESSAGES)):
                        for stream in (False, True):
                            fake.clear()
                            fake.fail(mode, model="a")
                            answer = client.post(path, json={**body, "stream": stream})
                            runs += 1
                            if fallback and mode == "400-echo":  # the request's own fault: no other backend helps
                                ok = answer.status_code == 400 and client_shape(path, answer, stream)
                            elif fallback and stream and mode in MIDSTREAM:  # failed over, or too late: ends in error
                                ok = answer.status_code == 200 and (answer.headers.get("x-broke-backend") == "fake/b"
                                                                    or "error" in answer.text[-400:])
                            elif fallback:
                                ok = answer.status_code == 200 and answer.headers.get("x-broke-backend") == "fake/b"
                            else:  # the upstream's error (its status passed on) or broke's own, in the API's shape
                                ok = (answer.status_code >= 400 or stream) and "internal error" not in answer.text \
                                    and client_shape(path, answer, stream)
                            if not ok or (answer.status_code >= 400 and leaks(answer)):  # answers name the key
                                bad += 1
                                errors.append(f"fault {mode} {path} stream={stream} fallback={fallback}: "
                                              f"{answer.status_code} via {answer.headers.get('x-broke-backend')} "
                                              f"{answer.text[:100]!r}")
                            time.sleep(0.05)
                            broke(home, "key-state", "set", "FAKE_API_KEY", "healthy")
                            for name in ("a", "b"):
                                broke(home, "model-state", "set", f"fake/{name}", "healthy")
    finally:
        fake.clear()
        broke(home, "stop", timeout=60)
    print(f"faults   {runs} fault runs ({len(modes)} modes x stream or not x chat or messages x one backend or "
          f"two): {bad} wrong answers or leaks")


def hostile_requests(token: str) -> list[tuple[str, str, str, dict[str, str], bytes, set[int]]]:
    """(name, method, path, headers, body, acceptable statuses)."""
    auth = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    chat = json.dumps(CHAT).encode()
    cases = [
        ("no token", "POST", "/v1/chat/completions", {"content-type": "application/json"}, chat, {401}),
        ("wrong token", "POST", "/v1/chat/completions", {"authorization": "Bearer nope"}, chat, {401}),
        ("token in query", "POST", f"/v1/chat/completions?key={token}", {}, chat, {401}),
        ("not JSON", "POST", "/v1/chat/completions", auth, b"{not json", {400}),
        ("JSON array", "POST", "/v1/chat/completions", auth, b"[1,2]", {400}),
        ("model not a string", "POST", "/v1/chat/completions", auth, b'{"model": 5}', {400}),
        ("unknown slot", "POST", "/v1/chat/completions", auth, b'{"model": "nope", "messages": []}', {400}),
        ("deep nesting", "POST", "/v1/chat/completions", auth, b"[" * 100_000 + b"]" * 100_000, {400, 413}),
        ("body over the limit", "POST", "/v1/chat/completions", auth,
         b'{"model":"sonnet","x":"' + b"a" * 70_000_000 + b'"}', {413}),
        ("too many headers", "POST", "/v1/chat/completions", {**auth, **{f"x-h{n}": "1" for n in range(200)}},
         chat, {431}),
        ("a 1 MB header", "POST", "/v1/chat/completions", {**auth, "x-big": "a" * 1_000_000}, chat, {431}),
        ("rebinding /health", "GET", "/health", {"host": "rebind.example"}, b"", {403}),
        ("rebinding /metrics", "GET", "/metrics", {"host": "rebind.example:4000"}, b"", {403}),
        ("path traversal", "GET", "/v1/../../etc/passwd", auth, b"", {404}),
        ("unknown path", "POST", "/admin/secret", auth, chat, {401, 403, 404, 405}),
        ("GET on a POST path", "GET", "/v1/chat/completions", auth, b"", {405}),
        ("NUL in model", "POST", "/v1/chat/completions", auth, b'{"model": "son\\u0000net"}', {400}),
        ("control characters in model", "POST", "/v1/messages", auth, b'{"model": "\\r\\nsonnet"}', {400}),
        ("huge model name", "POST", "/v1/chat/completions", auth, json.dumps({"model": "a" * 100_000}).encode(),
         {400}),
    ]
    return cases


def attack_hostile(root: Path, fake: FakeProvider, errors: list[str]) -> None:
    home, port, token = started_gateway(root, fake, "hostile")
    cases, bad = hostile_requests(token), 0
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            for name, method, path, headers, body, statuses in cases:
                try:
                    answer = client.request(method, path, headers=headers, content=body or None)
                    status = answer.status_code
                except httpx.HTTPError as exc:  # the server may close a connection it refuses
                    status, answer = 0, None
                    if "header" not in name and "limit" not in name:
                        errors.append(f"hostile '{name}': {type(exc).__name__}")
                        bad += 1
                    continue
                if status not in statuses or status >= 500 or (answer is not None and leaks(answer)):
                    bad += 1
                    errors.append(f"hostile '{name}': {status} (expected {sorted(statuses)})")
            alive = client.get("/health").status_code
    finally:
        broke(home, "stop", timeout=60)
    print(f"hostile  {len(cases)} hostile requests: {bad} answered wrongly; the gateway answered /health "
          f"{alive} after them")


def attack_load(root: Path, fake: FakeProvider, loads: int, requests: int, errors: list[str]) -> None:
    home, port, token = started_gateway(root, fake, "load")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60,
                          headers={"authorization": f"Bearer {token}"},
                          limits=httpx.Limits(max_connections=16)) as client:
            for load in range(loads):
                fake.clear()
                fake.reset_requests()

                def send(number: int, load: int = load) -> int:
                    body = {**CHAT, "messages": [{"role": "user", "content": f"request {load}-{number}"}]}
                    return client.post("/v1/chat/completions", json=body).status_code

                with ThreadPoolExecutor(16) as pool:
                    statuses = list(pool.map(send, range(requests)))
                seen = [r["messages_text"] for r in fake.requests]
                failed = sum(s != 200 for s in statuses)
                duplicated = len(seen) - len(set(seen))
                print(f"load     {requests} requests, 16 at a time: {failed} not answered 200, "
                      f"{requests - len(set(seen))} never reached the upstream, {duplicated} reached it twice")
                if failed or duplicated or len(set(seen)) != requests:
                    errors.append(f"load {load}: {failed} failed, {duplicated} duplicated, {len(set(seen))} seen")
    finally:
        broke(home, "stop", timeout=60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--writes", type=int, default=40)
    parser.add_argument("--kills", type=int, default=60)
    parser.add_argument("--loads", type=int, default=3)
    parser.add_argument("--load-requests", type=int, default=1000)
    parser.add_argument("--only", choices=["state", "writers", "kills", "faults", "hostile", "load"], nargs="*")
    args = parser.parse_args()
    root, errors = Path(tempfile.mkdtemp(prefix="broke-attack-")), []
    parts = set(args.only or ["state", "writers", "kills", "faults", "hostile", "load"])
    try:
        with FakeProvider() as fake:
            if "state" in parts:
                attack_state(root, fake.base_url, errors)
            if "writers" in parts:
                attack_writers(root, args.writers, args.writes, fake.base_url, errors)
            if "kills" in parts:
                attack_kills(root, args.kills, fake.base_url, errors)
            if "faults" in parts:
                attack_faults(root, fake, errors)
            if "hostile" in parts:
                attack_hostile(root, fake, errors)
            if "load" in parts:
                attack_load(root, fake, args.loads, args.load_requests, errors)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for line in errors[:30]:
        print("  " + line, file=sys.stderr)
    print(f"{len(errors)} finding(s)")
    print_machine_and_command("")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
