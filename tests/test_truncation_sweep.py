"""Every prefix of a real state file (custom backends, policies, a profile, nodes, router tiers): refused,
or read as exactly what the whole file holds. No prefix is silently taken for a state with less."""
from __future__ import annotations

from broke.errors import StateFileError
from broke.state.schema import unstructure
from broke.state.store import StateStore


def test_no_prefix_of_a_state_file_is_accepted_with_less(broke_home, cli):
    for args in (["backend", "add", "lab/one", "--provider", "openai-compatible", "--model", "one",
                  "--api-base", "http://127.0.0.1:1234/v1", "--key-env", "LAB_KEY"],
                 ["backend", "add", "lab/two", "--provider", "openai-compatible", "--model", "two-é",
                  "--api-base", "http://127.0.0.1:1235/v1"],
                 ["swap", "sonnet=lab/one", "haiku=lab/two"], ["fallback", "sonnet", "lab/two", "opus"],
                 ["key-policy", "openrouter", "--mode", "priority", "--cooldown", "30"],
                 ["model-policy", "sonnet", "--mode", "round_robin", "--order", "lab/two,lab/one"],
                 ["router", "tier", "basic", "lab/two"], ["node", "add", "box", "http://10.0.0.2:8080",
                                                          "--model", "qwen"],
                 ["profile", "new", "tight", "--rpm", "7", "--slots", "sonnet,haiku"], ["profile", "load", "tight"]):
        result = cli(*args)
        assert result.exit_code == 0, (args, result.output)
    path = broke_home / "state.toml"
    whole = path.read_bytes()
    store = StateStore(broke_home)
    expected = unstructure(store.load())
    assert expected["backends"] and expected["nodes"] and expected["key_policy"] and expected["access"]["rpm"] == 7

    refused = identical = 0
    for n in range(len(whole) + 1):
        path.write_bytes(whole[:n])
        try:
            got = unstructure(store.load())
        except StateFileError as exc:
            assert str(path) in str(exc) and ("broke snapshot" in str(exc) or "no snapshot" in str(exc)), exc
            refused += 1
            continue
        assert got == expected, f"a prefix of {n} of {len(whole)} bytes was read as a state with less"
        identical += 1
    print(f"\ntruncation sweep: {len(whole) + 1} prefixes ({len(whole)} bytes): {refused} refused, "
          f"{identical} read identical")
    assert identical >= 1 and refused == len(whole) + 1 - identical
