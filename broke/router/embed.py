"""Static prompt embeddings: a weighted mean of WordPiece token vectors distilled from all-MiniLM-L6-v2.

`data/vectors.npz` (written by `tools/router_data/make_vectors.py`) holds the vocabulary and an int8 vector per token
with a per-dimension scale. A prompt's words are the router's own tokens (`features.tokens`: the
lower-cased word runs of its visible part), each split into WordPiece tokens greedily, longest
match first, as BERT's tokenizer does (punctuation, which BERT keeps as tokens, is left out). Its
embedding is the mean of those tokens' vectors weighted by `weights` (one per token, fitted with the
router: SIF weights from the training prompts' token counts), L2-normalised.
"""
from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain, compress, repeat
from pathlib import Path

import numpy as np

from broke.router import features

VECTORS_FILE = Path(__file__).resolve().parent / "data" / "vectors.npz"
UNKNOWN = "[UNK]"
#: Longer words are one unknown token, as in BERT.
MAX_WORD_CHARS = 100
#: Words whose pieces are remembered per process (the request path looks most words up once).
WORD_CACHE = 50_000  # about 5 MB of words


@dataclass(frozen=True, eq=False)
class TokenVectors:
    """The distilled vocabulary: token ids by WordPiece string and a float32 vector per id."""

    index: dict[str, int]
    vectors: np.ndarray  # (vocab, dims) float32
    _words: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def pieces(self, word: str) -> tuple[int, ...]:
        """The WordPiece ids of one lower-cased word (greedy longest match; unknown: [UNK])."""
        known = self._words.get(word)
        if known is not None:
            return known
        out: list[int] = []
        start = 0
        while start < len(word) and len(word) <= MAX_WORD_CHARS:
            for end in range(len(word), start, -1):
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.index:
                    out.append(self.index[piece])
                    start = end
                    break
            else:
                out = []
                break
        result = tuple(out) if out and start == len(word) else (self.index[UNKNOWN],)
        if len(self._words) < WORD_CACHE:
            self._words[word] = result
        return result

    def ids(self, toks: Sequence[str]) -> np.ndarray:
        """The WordPiece ids of a prompt's tokens (`features.tokens`): whole-word tokens first, then
        the pieces of the other words (the embedding is a sum, so order does not matter). Each step
        runs at C speed (map, filter, compress) but splitting a word not seen before."""
        found = list(map(self.index.get, toks))
        ids = list(filter(None, found))  # id 0 is [PAD], never a word
        if len(ids) < len(found):
            ids.extend(chain.from_iterable(map(self.pieces, compress(toks, map(operator.is_, found, repeat(None))))))
        return np.array(ids, dtype=np.int64)

    def embed(self, ids: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """The L2-normalised weighted mean of the tokens' vectors (zeros for no tokens)."""
        if len(ids) == 0:
            return np.zeros(self.vectors.shape[1], dtype=np.float32)
        vector = weights.take(ids) @ self.vectors.take(ids, axis=0)  # take: faster than fancy indexing
        norm = float(np.sqrt(vector @ vector))
        return vector / norm if norm > 0 else vector

    def embed_many(self, texts: Sequence[str], weights: np.ndarray) -> np.ndarray:
        """Embeddings of many prompts, one row each."""
        out = np.zeros((len(texts), self.vectors.shape[1]), dtype=np.float32)
        for i, text in enumerate(texts):
            out[i] = self.embed(self.ids(features.tokens(text)), weights)
        return out


_CACHE: dict[Path, TokenVectors] = {}


def load_vectors(path: Path = VECTORS_FILE) -> TokenVectors:
    """The token vectors (loaded once per process)."""
    if path not in _CACHE:
        with np.load(path, allow_pickle=False) as npz:
            index = {str(t): i for i, t in enumerate(npz["vocab"])}
            vectors = (npz["vectors"].astype(np.float32) * npz["scale"]).astype(np.float32)
        _CACHE[path] = TokenVectors(index, vectors)
    return _CACHE[path]


def sif_weights(ids: Sequence[np.ndarray], size: int, a: float = 1e-3) -> np.ndarray:
    """SIF token weights a / (a + p(token)) from token counts over `ids` (float32, one per token)."""
    counts = np.bincount(np.concatenate(list(ids)) if len(ids) else np.zeros(0, dtype=np.int64), minlength=size)
    p = counts / max(int(counts.sum()), 1)
    return (a / (a + p)).astype(np.float32)
