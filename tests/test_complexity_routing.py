"""The gateway's use of the complexity router, without a running gateway."""
from __future__ import annotations

from broke.gateway.complexity import ComplexityRouter
from broke.gateway.prompts import user_turns
from broke.state.store import default_state


def test_user_turns_of_every_api():
    chat = {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "one"},
                         {"role": "assistant", "content": "ok"},
                         {"role": "user", "content": [{"type": "text", "text": "two"}, {"type": "image"}]}]}
    assert user_turns(chat) == ["one", "two"]
    assert user_turns({"input": "just text"}) == ["just text"]
    assert user_turns({"input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}]}) == ["hi"]
    assert user_turns({"messages": "nonsense"}) == []


def test_a_conversation_never_moves_down_a_tier(tmp_path):
    state = default_state()
    state.router.balanced_from, state.router.premium_from = 0.3, 0.6
    router = ComplexityRouter(tmp_path)
    assert router._sticky("client", "first", 0.1, state) == 0.1  # basic
    assert router._sticky("client", "first", 0.7, state) == 0.7  # premium
    assert router._sticky("client", "first", 0.1, state) == 0.6  # stays premium
    assert router._sticky("client", "other", 0.1, state) == 0.1  # another conversation
    assert router._sticky("profile:ci", "first", 0.1, state) == 0.1  # another client
