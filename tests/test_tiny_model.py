"""The tiny local model: built on the spot, loaded through the real mlx-lm path, and rigged to reply a fixed answer."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from broke.local.tiny import make_tiny

mlx_lm = pytest.importorskip("mlx_lm")
from mlx_lm.sample_utils import make_sampler  # noqa: E402

ANSWER = "Hello from the tiny model! The tiny model says hello."


def _prompts(tokenizer, answer: str) -> list:
    chat = tokenizer.apply_chat_template(
        [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "say hello"},
            {"role": "assistant", "content": answer},
            {"role": "user", "content": "once more"},
        ],
        add_generation_prompt=True,
    )
    # A plain prompt, a prompt that ends with the answer's own words, and a chat-templated one.
    return ["What is the capital of France?", f"Repeat after me: {answer}", chat]


@pytest.mark.parametrize("answer", [ANSWER, "ha ha ha ha", "héllo wörld 你好 你好\nbye bye"])
def test_answer_is_exact_for_any_prompt(tmp_path: Path, answer: str) -> None:
    model, tokenizer = mlx_lm.load(str(make_tiny(tmp_path / "tiny", answer=answer)))
    for prompt in _prompts(tokenizer, answer):
        assert mlx_lm.generate(model, tokenizer, prompt, max_tokens=200) == answer


def test_stream_stops_at_eos(tmp_path: Path) -> None:
    model, tokenizer = mlx_lm.load(str(make_tiny(tmp_path / "tiny", answer=ANSWER)))
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True)
    responses = list(mlx_lm.stream_generate(model, tokenizer, chat, max_tokens=200))
    assert "".join(r.text for r in responses) == ANSWER
    assert responses[-1].finish_reason == "stop"
    assert responses[-1].token == tokenizer.eos_token_id
    assert all(r.finish_reason is None for r in responses[:-1])
    assert len(responses) < 20  # stopped at EOS, far below max_tokens


def test_answer_survives_sampling(tmp_path: Path) -> None:
    model, tokenizer = mlx_lm.load(str(make_tiny(tmp_path / "tiny", answer=ANSWER)))
    sampler = make_sampler(temp=1.0)
    assert mlx_lm.generate(model, tokenizer, "hi", max_tokens=200, sampler=sampler) == ANSWER


def test_max_tokens_truncates(tmp_path: Path) -> None:
    model, tokenizer = mlx_lm.load(str(make_tiny(tmp_path / "tiny", answer=ANSWER)))
    responses = list(mlx_lm.stream_generate(model, tokenizer, "hi", max_tokens=2))
    assert len(responses) == 2 and responses[-1].finish_reason == "length"
    assert ANSWER.startswith("".join(r.text for r in responses))


def test_empty_answer_is_just_eos(tmp_path: Path) -> None:
    model, tokenizer = mlx_lm.load(str(make_tiny(tmp_path / "tiny", answer="")))
    assert mlx_lm.generate(model, tokenizer, "hi", max_tokens=20) == ""


def test_random_mode_loads_and_generates(tmp_path: Path) -> None:
    a = make_tiny(tmp_path / "a", seed=1)
    model, tokenizer = mlx_lm.load(str(a))
    responses = list(mlx_lm.stream_generate(model, tokenizer, "hello there", max_tokens=8))
    assert 1 <= len(responses) <= 8
    # Seeded: the same seed writes the same weights, another seed different ones.
    b, c = make_tiny(tmp_path / "b", seed=1), make_tiny(tmp_path / "c", seed=2)
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    assert (a / "model.safetensors").read_bytes() != (c / "model.safetensors").read_bytes()


def test_directory_is_small_and_quick(tmp_path: Path) -> None:
    start = time.perf_counter()
    directory = make_tiny(tmp_path / "tiny", answer=ANSWER)
    elapsed = time.perf_counter() - start
    names = {p.name for p in directory.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names
    assert sum(p.stat().st_size for p in directory.iterdir()) < 1_000_000
    assert elapsed < 2.0


def test_long_answer_with_repeats(tmp_path: Path) -> None:
    answer = " ".join(["the cat sat on the mat and the dog sat on the cat"] * 30)  # 83 pieces: hidden 128
    directory = make_tiny(tmp_path / "tiny", answer=answer)
    assert sum(p.stat().st_size for p in directory.iterdir()) < 5_000_000
    model, tokenizer = mlx_lm.load(str(directory))
    assert mlx_lm.generate(model, tokenizer, "go", max_tokens=1000) == answer
