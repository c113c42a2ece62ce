"""Differential check of broke's request translation against LiteLLM's own, on a few sample requests
shaped like Claude Code's and Codex's: prints, per sample, where the chat completion requests differ.

    LITELLM_LOCAL_MODEL_COST_MAP=True .venv/bin/python tools/translation_diff.py

Dev only (not in the wheel): LiteLLM is read, never used by broke's translation.
"""
from __future__ import annotations

import json
import os
from typing import Any

from broke.gateway.translate import messages_chat, responses_chat

PNG = "iVBORw0KGgo="
TOOL = {"name": "Bash", "description": "run", "input_schema": {"type": "object", "properties": {
    "command": {"type": "string"}}}, "cache_control": {"type": "ephemeral"}}
MESSAGES: dict[str, dict[str, Any]] = {
    "plain": {"model": "m", "max_tokens": 64, "system": [{"type": "text", "text": "be brief",
                                                           "cache_control": {"type": "ephemeral"}}],
              "metadata": {"user_id": "u"}, "messages": [{"role": "user", "content": "hi"}]},
    "tool loop + thinking + image": {
        "model": "m", "max_tokens": 4096, "stream": True, "tools": [TOOL],
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image", "source": {
                "type": "base64", "media_type": "image/png", "data": PNG}}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "list it", "signature": "sig"},
                {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "ls"}},
                {"type": "tool_use", "id": "t2", "name": "Bash", "input": {"command": "pwd"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "a.py"},
                {"type": "tool_result", "tool_use_id": "t2", "is_error": True, "content": "denied"},
                {"type": "text", "text": "go on"}]}]},
}
RESPONSES: dict[str, dict[str, Any]] = {
    "codex turn": {"model": "m", "instructions": "be Codex", "store": False, "stream": True,
                   "reasoning": {"effort": "high"}, "include": ["reasoning.encrypted_content"],
                   "tools": [{"type": "function", "name": "shell", "parameters": {"type": "object"}}],
                   "input": [
                       {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "rules"}]},
                       {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "ls"}]},
                       {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "run"}]},
                       {"type": "function_call", "call_id": "c1", "name": "shell", "arguments": '{"cmd":"ls"}'},
                       {"type": "function_call_output", "call_id": "c1", "output": "a.py"}]},
}


def diff(path: str, ours: Any, theirs: Any, out: list[str]) -> None:
    """Where two JSON values differ, one line each."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        for key in sorted(set(ours) | set(theirs)):
            diff(f"{path}.{key}", ours.get(key, "<absent>"), theirs.get(key, "<absent>"), out)
    elif isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs):
        for index, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            diff(f"{path}[{index}]", a, b, out)
    elif ours != theirs:
        out.append(f"  {path}: broke {json.dumps(ours)[:150]} | LiteLLM {json.dumps(theirs, default=str)[:150]}")


def main() -> None:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from litellm.llms.anthropic.pass_through.adapters.transformation import LiteLLMAnthropicMessagesAdapter
    from litellm.responses.litellm_completion_transformation.transformation import (
        LiteLLMCompletionResponsesConfig,
    )

    adapter: Any = LiteLLMAnthropicMessagesAdapter()
    responses: Any = LiteLLMCompletionResponsesConfig
    for name, request in MESSAGES.items():
        litellm_messages, _ = adapter.translate_anthropic_to_openai(json.loads(json.dumps(request)))
        out: list[str] = []
        diff("", messages_chat.to_chat(request), json.loads(json.dumps(litellm_messages, default=str)), out)
        print(f"messages → chat, {name}: {len(out)} difference(s)", *out, sep="\n")
    for name, request in RESPONSES.items():
        params = {k: v for k, v in request.items() if k not in ("model", "input", "stream")}
        theirs = responses.transform_responses_api_request_to_chat_completion_request(
            model="m", input=request["input"], responses_api_request=params, stream=request.get("stream"))
        out = []
        keep = {k: v for k, v in theirs.items() if v is not None and k in (
            "model", "messages", "tools", "tool_choice", "stream", "max_tokens", "reasoning_effort", "temperature")}
        diff("", responses_chat.to_chat(request), json.loads(json.dumps(keep, default=str)), out)
        print(f"responses → chat, {name}: {len(out)} difference(s)", *out, sep="\n")


if __name__ == "__main__":
    main()
