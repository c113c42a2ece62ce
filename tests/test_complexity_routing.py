"""The gateway's use of the complexity router, without a running gateway."""
from __future__ import annotations

from dataclasses import dataclass

from broke.health import Health
from broke.routing.conversation import user_turns
from broke.routing.resolve import Conversation, resolve, tier_index
from broke.routing.rotation import RotationState
from broke.state.store import default_state


@dataclass(frozen=True)
class FixedEstimate:
    """An estimator that gives every conversation the same p_strong (the rule under test is the resolver's)."""

    p_strong: float
    prompt_complexity: float = 0.0

    def estimate(self, text: str) -> FixedEstimate:
        return self


def test_user_turns_of_every_api():
    chat = {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "one"},
                         {"role": "assistant", "content": "ok"},
                         {"role": "user", "content": [{"type": "text", "text": "two"}, {"type": "image"}]}]}
    assert user_turns(chat) == ["one", "two"]
    assert user_turns({"input": "just text"}) == ["just text"]
    assert user_turns({"input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}]}) == ["hi"]
    assert user_turns({"messages": "nonsense"}) == []
    gemini = {"systemInstruction": {"parts": [{"text": "be brief"}]},
              "contents": [{"role": "user", "parts": [{"text": "one"}]}, {"role": "model", "parts": [{"text": "ok"}]},
                           {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]},
                           {"role": "user", "parts": [{"text": "two"}, {"inlineData": {}}]}]}
    assert user_turns(gemini) == ["one", "two"]
    assert user_turns({"contents": "nonsense"}) == []


def test_a_conversation_never_moves_down_a_tier():
    state = default_state()
    state.router.balanced_from, state.router.premium_from = 0.3, 0.6
    state.router.tiers = {"basic": ["mlx/b"], "balanced": ["mlx/m"], "premium": ["mlx/p"]}
    rotation = RotationState()

    def p_strong(owner: str, first: str, estimated: float) -> float | None:
        conversation = Conversation((first,), owner)
        resolution = resolve("auto", state, Health(), env={}, now=0.0, conversation=conversation,
                             estimator=FixedEstimate(estimated), rotation=rotation.view(frozenset(), conversation.key))
        rotation.reached(conversation.key, tier_index(resolution.tier))
        return resolution.p_strong

    assert p_strong("client", "first", 0.1) == 0.1  # basic
    assert p_strong("client", "first", 0.7) == 0.7  # premium
    assert p_strong("client", "first", 0.1) == 0.6  # stays premium
    assert p_strong("client", "other", 0.1) == 0.1  # another conversation
    assert p_strong("profile:ci", "first", 0.1) == 0.1  # another client
