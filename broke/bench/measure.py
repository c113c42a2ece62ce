"""One timed request: stream a chat completion and time its first and last tokens."""
from __future__ import annotations

import json
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import httpx

#: Worker requests carry a seed: mlx_lm.server then runs each on its sequential path (no batching),
#: which is what a one-request-at-a-time benchmark measures. Decoding stays greedy (temperature 0).
SEED = 0


@dataclass(frozen=True)
class PromptRun:
    """The figures of one run of one prompt (error: why it failed, and then no figures)."""

    ttft_s: float = 0.0
    total_s: float = 0.0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    error: str = ""

    @property
    def prefill_tps(self) -> float:
        """Prompt tokens processed per second (tokens a prompt cache supplied are not counted)."""
        return (self.prompt_tokens - self.cached_tokens) / self.ttft_s if self.ttft_s > 0 else 0.0

    @property
    def decode_tps(self) -> float:
        """Tokens per second after the first one (the first token's time belongs to the prefill)."""
        decode_s = self.total_s - self.ttft_s
        return (self.completion_tokens - 1) / decode_s if self.completion_tokens > 1 and decode_s > 0 else 0.0


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.read().decode(errors="replace")
        message = json.loads(body).get("error", body)
        message = message.get("message", message) if isinstance(message, dict) else message
    except (ValueError, AttributeError):
        message = ""
    return f"HTTP {response.status_code}" + (f": {str(message)[:160]}" if message else "")


def timed_chat(url: str, model: str, prompt: str, max_tokens: int, *,
               headers: Mapping[str, str] | None = None, seed: bool = True, timeout_s: float = 600.0) -> PromptRun:
    """POST a streaming chat completion to `url` and time it from the client's side."""
    body: dict = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
                  "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    if seed:
        body["seed"] = SEED
    first = last = 0.0
    usage: dict = {}
    started = time.perf_counter()
    try:
        with httpx.stream("POST", url, json=body, headers=dict(headers or {}), timeout=timeout_s) as response:
            if response.status_code != 200:
                return PromptRun(error=_error_text(response))
            for line in response.iter_lines():
                if not line.startswith("data: {"):
                    continue
                now = time.perf_counter()
                chunk = json.loads(line[6:])
                if chunk.get("usage"):
                    usage = chunk["usage"]
                for choice in chunk.get("choices") or ():
                    delta = choice.get("delta") or {}
                    if delta.get("content") or delta.get("reasoning_content") or choice.get("finish_reason"):
                        first = first or now
                        last = now
    except httpx.HTTPError as exc:
        return PromptRun(error=f"{type(exc).__name__}: {exc}"[:200])
    except ValueError:
        return PromptRun(error="the stream held a chunk that is not JSON")
    if not first or not usage:
        return PromptRun(error="the stream ended without tokens or usage")
    details = usage.get("prompt_tokens_details") or {}
    return PromptRun(first - started, last - started, int(usage.get("prompt_tokens", 0)),
                     int(details.get("cached_tokens") or 0), int(usage.get("completion_tokens", 0)))


def spread(values: Sequence[float]) -> dict[str, float] | None:
    """min / median / max of some figures (None when there are none)."""
    if not values:
        return None
    return {"min": round(min(values), 6), "median": round(statistics.median(values), 6),
            "max": round(max(values), 6)}
