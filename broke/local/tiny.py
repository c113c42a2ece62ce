"""Tiny llama checkpoints built on the spot, so tests and demos of local MLX serving need no download.

`make_tiny(directory)` writes a complete model directory (config.json, model.safetensors, a
byte-level BPE tokenizer trained here on a small built-in corpus, tokenizer_config.json with a
chat template, special_tokens_map.json, generation_config.json) that loads through the real
mlx-lm code path: `mlx_lm.load(directory)` and `mlx_lm.server --model directory`.

With `answer=...` the model is rigged so that greedy decoding replies with exactly `answer`
and then `</s>`, whatever the prompt:

* every layer's attention output projection (o_proj) and MLP output projection (down_proj) is
  zero, so the residual stream at each position is just the embedding of that position's token;
* the answer is cut into pieces that are all distinct, at least two bytes long and absent from
  the trained vocabulary; each piece becomes a token of its own (appended to the BPE vocabulary
  with no merge leading to it, so encoding text never produces it: prompts, and earlier
  assistant turns that contain the answer, tokenize to ordinary tokens);
* the embedding of the i-th answer token is the one-hot vector e_i; every other token embeds
  as e_0. One-hot rows all have the same norm, so the final RMSNorm (weight 1) keeps them
  one-hot, and lm_head row `successor(i)` is `GAP / sqrt(hidden)` times e_i, where the
  successor of state 0 is the first answer token, of state i the (i+1)-th, of the last the
  EOS token. The winning logit is GAP (100) and every other logit is 0, so the reply is the same
  under sampling too: a wrong token has odds of about vocab * e^(-100/T) per step, 1e-19 at
  temperature 2, 5e-9 at temperature 4.

Limitations: the hidden size is the smallest multiple of 64 above the number of pieces (a piece
is roughly a word), so the directory grows with the answer: about 0.5 MB up to 63 pieces,
1.1 MB up to 127, 2.5 MB up to 255; past a hidden size of 256 the weights are stored as float16
(2.5 MB at 400 pieces), which mlx runs about 40% slower on CPU. An answer that is a single byte
(say "4") or exactly one token of the trained vocabulary cannot use an unreachable token, so a raw
completion prompt that itself ends with that token gets an empty reply (chat prompts always end
with `<|assistant|>` and are unaffected). mlx-lm's byte-level detokenizer drops a leading space
of a reply, so an answer starting with a space comes back without it.

Without an answer the weights are seeded random: the model loads and generates tokens, nothing
more.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

BOS, EOS, UNK, PAD = "<s>", "</s>", "<unk>", "<pad>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>", "<|tool|>", "<|end|>")
SPECIAL_TOKENS = (UNK, BOS, EOS, PAD, *ROLE_TOKENS)

# `<s><|user|>hi<|end|><|assistant|>`: the prompt of a chat request always ends with the
# assistant marker, a token that is not part of any answer.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>"
    "{% if message['content'] is string %}{{ message['content'] }}{% endif %}"
    "<|end|>"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

HIDDEN_MIN = 64
LAYERS = 2
HEADS = 4
KV_HEADS = 2
HEAD_DIM = 16
INTERMEDIATE = 128
BPE_VOCAB = 512
MAX_POSITIONS = 2048
RMS_EPS = 1e-5
ROPE_THETA = 10000.0
GAP = 100.0
FLOAT16_ABOVE = 256  # hidden sizes above this store float16 weights

_CORPUS = """\
The quick brown fox jumps over the lazy dog. A small model can still say hello to the world.
Routing a request to the right backend is the job of the gateway; the worker answers it.
When the cloud provider is slow, the local model takes over and the user barely notices.
Please write a short reply. Thank you for the question, here is the answer you asked for.
It is sunny today, tomorrow it will rain, and on the weekend the weather should be fine.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 2024. Two plus two is four, and three times three is nine.
What is the capital of France? Paris is the capital of France, and Berlin is the capital of Germany.
def hello(name):\n    return f"Hello, {name}!"\n\nprint(hello("world"))
{"role": "user", "content": "Summarise this text in one sentence, please."}
Models read tokens, predict the next token, and stop when they emit the end of sequence token.
This is a test. This is only a test. If this were a real answer, it would be longer and wiser.
"""


def make_tiny(directory: Path, *, answer: str | None = None, seed: int = 0, layers: int = LAYERS) -> Path:
    """Write a tiny llama model directory at `directory` and return it.

    More `layers` make a slower model (each decoding step costs about `layers` times more).

    With `answer`, greedy decoding replies exactly `answer` then EOS for any prompt; without
    it the weights are random (seeded by `seed`).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)

    tokenizer = _train_tokenizer()
    pieces: list[str] = []
    if answer is not None:
        pieces = _answer_pieces(answer, set(tokenizer.get_vocab(with_added_tokens=True)))
        tokenizer = _with_pieces(tokenizer, pieces)
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    vocab_size = len(vocab)
    assert sorted(vocab.values()) == list(range(vocab_size)), "token ids must be contiguous"
    chain = [vocab[p] for p in pieces]

    hidden = max(HIDDEN_MIN, math.ceil((len(chain) + 1) / HIDDEN_MIN) * HIDDEN_MIN)
    dtype = np.float32 if hidden <= FLOAT16_ABOVE else np.float16
    ids = {name: vocab[name] for name in (BOS, EOS, PAD)}
    rng = np.random.default_rng(seed)
    if answer is None:
        weights = _random_weights(rng, vocab_size, hidden, layers)
    else:
        weights = _answer_weights(rng, vocab_size, hidden, layers, chain, ids[EOS])
    save_file({k: v.astype(dtype) for k, v in weights.items()}, str(directory / "model.safetensors"),
              metadata={"format": "mlx"})

    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "head_dim": HEAD_DIM,
        "intermediate_size": INTERMEDIATE,
        "hidden_act": "silu",
        "vocab_size": vocab_size,
        "max_position_embeddings": MAX_POSITIONS,
        "rms_norm_eps": RMS_EPS,
        "rope_theta": ROPE_THETA,
        "tie_word_embeddings": False,
        "bos_token_id": ids[BOS],
        "eos_token_id": ids[EOS],
        "pad_token_id": ids[PAD],
        "torch_dtype": np.dtype(dtype).name,
        "broke_tiny": {"answer": answer, "seed": seed, "answer_tokens": len(chain), "layers": layers},
    }
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": UNK,
        "pad_token": PAD,
        "model_max_length": MAX_POSITIONS,
        "clean_up_tokenization_spaces": False,
        "chat_template": CHAT_TEMPLATE,
    }
    special_tokens_map = {"bos_token": BOS, "eos_token": EOS, "unk_token": UNK, "pad_token": PAD}
    generation_config = {
        "bos_token_id": ids[BOS],
        "eos_token_id": ids[EOS],
        "pad_token_id": ids[PAD],
        "do_sample": False,
    }
    tokenizer.save(str(directory / "tokenizer.json"))
    for name, data in (
        ("config.json", config),
        ("tokenizer_config.json", tokenizer_config),
        ("special_tokens_map.json", special_tokens_map),
        ("generation_config.json", generation_config),
    ):
        (directory / name).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return directory


def _train_tokenizer() -> Tokenizer:
    """A byte-level BPE (GPT-2 style) trained on the built-in corpus; BOS prepended on encode."""
    tokenizer = Tokenizer(models.BPE(unk_token=UNK, ignore_merges=False))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS.splitlines(), trainer=trainer)
    bos = tokenizer.token_to_id(BOS)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos)]
    )
    return tokenizer


def _answer_pieces(answer: str, taken: set[str]) -> list[str]:
    """Cut `answer` (as byte-level BPE text) into distinct pieces, each unreachable when encoding.

    Pieces are runs of whole pre-tokenizer words (so they split at character boundaries), at
    least two bytes long and not in `taken` (the trained vocabulary) nor used before. When no
    such cut exists (a one-byte answer, an answer that is one trained token), the whole answer
    is a single piece anyway.
    """
    words = [w for w, _ in pre_tokenizers.ByteLevel(add_prefix_space=False).pre_tokenize_str(answer)]
    pieces: list[str] = []
    used: set[str] = set()

    def fits(piece: str) -> bool:
        return len(piece) >= 2 and piece not in taken and piece not in used

    current = ""
    for word in words:
        current += word
        if fits(current):
            pieces.append(current)
            used.add(current)
            current = ""
    while current and pieces:  # a tail that cannot stand alone joins the pieces before it
        previous = pieces.pop()
        used.discard(previous)
        current = previous + current
        if fits(current):
            break
    if current:
        pieces.append(current)
    return pieces


def _with_pieces(tokenizer: Tokenizer, pieces: list[str]) -> Tokenizer:
    """The same tokenizer with each new piece appended to the BPE vocabulary (no merges)."""
    data = json.loads(tokenizer.to_str())
    vocab = data["model"]["vocab"]
    next_id = tokenizer.get_vocab_size(with_added_tokens=True)
    for piece in pieces:
        if piece not in vocab:
            vocab[piece] = next_id
            next_id += 1
    return Tokenizer.from_str(json.dumps(data))


def _names(hidden: int, layers: int) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes, as mlx_lm.models.llama expects them (untied lm_head)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes |= {
            p + "self_attn.q_proj.weight": (HEADS * HEAD_DIM, hidden),
            p + "self_attn.k_proj.weight": (KV_HEADS * HEAD_DIM, hidden),
            p + "self_attn.v_proj.weight": (KV_HEADS * HEAD_DIM, hidden),
            p + "self_attn.o_proj.weight": (hidden, HEADS * HEAD_DIM),
            p + "mlp.gate_proj.weight": (INTERMEDIATE, hidden),
            p + "mlp.up_proj.weight": (INTERMEDIATE, hidden),
            p + "mlp.down_proj.weight": (hidden, INTERMEDIATE),
            p + "input_layernorm.weight": (hidden,),
            p + "post_attention_layernorm.weight": (hidden,),
        }
    shapes["model.norm.weight"] = (hidden,)
    return shapes


def _random_weights(rng: np.random.Generator, vocab_size: int, hidden: int, layers: int) -> dict[str, np.ndarray]:
    weights = {
        name: np.ones(shape, np.float32) if len(shape) == 1
        else rng.normal(0.0, shape[1] ** -0.5, shape).astype(np.float32)
        for name, shape in _names(hidden, layers).items()
    }
    weights["model.embed_tokens.weight"] = rng.normal(0.0, 1.0, (vocab_size, hidden)).astype(np.float32)
    weights["lm_head.weight"] = rng.normal(0.0, hidden**-0.5, (vocab_size, hidden)).astype(np.float32)
    return weights


def _answer_weights(
    rng: np.random.Generator, vocab_size: int, hidden: int, layers: int, chain: list[int], eos: int
) -> dict[str, np.ndarray]:
    """Weights under which token chain[i] is followed by chain[i+1], the last by EOS, any other by chain[0]."""
    weights = _random_weights(rng, vocab_size, hidden, layers)
    for name in weights:
        if name.endswith(("o_proj.weight", "down_proj.weight")):
            weights[name] = np.zeros_like(weights[name])  # residual stream = token embedding
    embed = np.zeros((vocab_size, hidden), np.float32)
    embed[:, 0] = 1.0  # state 0: "not inside the answer"
    for state, token in enumerate(chain, start=1):
        embed[token] = 0.0
        embed[token, state] = 1.0
    head = np.zeros((vocab_size, hidden), np.float32)
    successors = [*chain, eos]  # successor of state s
    for state, token in enumerate(successors):
        head[token, state] = GAP / math.sqrt(hidden)  # RMSNorm turns e_s into sqrt(hidden) * e_s
    weights["model.embed_tokens.weight"] = embed
    weights["lm_head.weight"] = head
    return weights
