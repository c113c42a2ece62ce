"""The user's turns of a request, whichever API it speaks, and the text the `auto` estimate reads."""
from __future__ import annotations

from collections.abc import Mapping, Sequence


def _text(content: object) -> str:
    """Plain text of a message content: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(part["text"] for part in content
                         if isinstance(part, dict) and isinstance(part.get("text"), str))
    return ""


def user_turns(payload: Mapping[str, object]) -> list[str]:
    """The texts of the user's turns, oldest first (`messages`, the Responses API's `input`, or Google's
    `contents`)."""
    if "contents" in payload and "messages" not in payload:
        contents = payload["contents"]
        turns = [_text(item.get("parts")) for item in contents if isinstance(item, dict)
                 and item.get("role", "user") == "user"] if isinstance(contents, list) else []
        return [t for t in turns if t]
    source = payload.get("messages") if "messages" in payload else payload.get("input")
    if isinstance(source, str) and "messages" not in payload:  # the Responses API's plain-text input
        return [source]
    if not isinstance(source, list):
        return []
    turns = [_text(item.get("content")) for item in source
             if isinstance(item, dict) and item.get("role", "user") == "user"]
    return [t for t in turns if t]


def conversation_text(turns: Sequence[str]) -> str:
    """Join the user turns of a conversation the way the features count conversation depth."""
    return "\n\n".join(t if i == 0 else f"[turn {i + 1}]\n{t}" for i, t in enumerate(turns))
