"""Static prompt embeddings: a weighted mean of WordPiece token vectors distilled from all-MiniLM-L6-v2.

`data/vectors.npz` (written by `make_vectors`) holds the vocabulary and an int8 vector per token
with a per-dimension scale. A prompt's embedding is the mean of its tokens' vectors weighted by
`weights` (one per token, fitted with the router: SIF weights from the training prompts' token
counts), L2-normalised. Only the visible part of a long prompt (`features.HEAD_CHARS` and
`TAIL_CHARS`) is tokenised. Tokenising uses the `tokenizers` library (BERT's uncased WordPiece).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from broke.router.features import _visible

VECTORS_FILE = Path(__file__).resolve().parent / "data" / "vectors.npz"


@dataclass(frozen=True, eq=False)
class TokenVectors:
    """The distilled vocabulary: its tokenizer and a float32 vector per token id."""

    tokenizer: Any  # tokenizers.Tokenizer
    vectors: np.ndarray  # (vocab, dims) float32

    def ids(self, text: str) -> np.ndarray:
        """WordPiece ids of the visible text (no special tokens)."""
        return np.asarray(self.tokenizer.encode(_visible(text), add_special_tokens=False).ids, dtype=np.int64)

    def batch_ids(self, texts: Sequence[str]) -> list[np.ndarray]:
        encoded = self.tokenizer.encode_batch([_visible(t) for t in texts], add_special_tokens=False)
        return [np.asarray(e.ids, dtype=np.int64) for e in encoded]

    def embed(self, ids: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """The L2-normalised weighted mean of the tokens' vectors (zeros for no tokens)."""
        if len(ids) == 0:
            return np.zeros(self.vectors.shape[1], dtype=np.float32)
        w = weights[ids]
        vector = w @ self.vectors[ids]
        norm = float(np.sqrt(vector @ vector))
        return vector / norm if norm > 0 else vector

    def embed_many(self, texts: Sequence[str], weights: np.ndarray) -> np.ndarray:
        return np.stack([self.embed(ids, weights) for ids in self.batch_ids(texts)]) if texts else \
            np.zeros((0, self.vectors.shape[1]), dtype=np.float32)


_CACHE: dict[Path, TokenVectors] = {}


def load_vectors(path: Path = VECTORS_FILE) -> TokenVectors:
    """The token vectors and their tokenizer (loaded once per process)."""
    if path not in _CACHE:
        from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

        with np.load(path, allow_pickle=False) as npz:
            vocab = [str(t) for t in npz["vocab"]]
            vectors = (npz["vectors"].astype(np.float32) * npz["scale"]).astype(np.float32)
        tokenizer = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]",
                                               max_input_chars_per_word=100))
        tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        _CACHE[path] = TokenVectors(tokenizer, vectors)
    return _CACHE[path]


def vocab_size(path: Path = VECTORS_FILE) -> int:
    return len(load_vectors(path).vectors)


def sif_weights(ids: Sequence[np.ndarray], size: int, a: float = 1e-3) -> np.ndarray:
    """SIF token weights a / (a + p(token)) from token counts over `ids` (float32, one per token)."""
    counts = np.bincount(np.concatenate(list(ids)) if len(ids) else np.zeros(0, dtype=np.int64), minlength=size)
    p = counts / max(int(counts.sum()), 1)
    return (a / (a + p)).astype(np.float32)
