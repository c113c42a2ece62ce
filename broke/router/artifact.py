"""The cached fitted router under `$BROKE_HOME/router/`: written and read only by broke.

`model.npz` holds plain numeric arrays (no pickles: loaded with allow_pickle=False) and is
byte-identical for identical weights. `model.json` is its header: the format, the data and code
versions it was trained with, the sha256 of `model.npz`, and an HMAC-SHA256 of all that under
`key`, a random secret made once per home (mode 0600). A header from another version, a
changed `model.npz`, or a file broke did not sign is never loaded; the caller retrains.
"""
from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np

from broke.fileio import atomic_write
from broke.router import embed, features
from broke.router.estimator import BLEND, HEADS, N_TREE_INPUTS, Router

#: 2: p_strong's boosted trees (the tree_* arrays); the linear heads see features.LINEAR_FEATURES.
#: 3: p_strong blends the trees with the meaning head over static embeddings and the prompt's length.
#: 4: the blend is trees, meaning head and answer_complexity; drivers compare with `hand_reference`.
FORMAT = 4
_SHAPES = {
    "word_weights": (features.N_HASH, len(HEADS)),
    "hand_weights": (features.N_LINEAR, len(HEADS)),
    "bias": (len(HEADS),),
    "platt": (len(HEADS), 2),
    "hand_mean": (features.N_LINEAR,),
    "hand_scale": (features.N_LINEAR,),
    "tree_base": (1,),
    "tree_depth": (1,),
    "meaning_bias": (1,),
    "meaning_mean": (len(features.HAND_FEATURES),),
    "meaning_scale": (len(features.HAND_FEATURES),),
    "hand_reference": (len(features.HAND_FEATURES),),
    "blend_norm": (len(BLEND), 2),
}
#: The node table (one length, any) and the tree roots; integer arrays index nodes or tree inputs.
_NODE_ARRAYS = ("tree_feature", "tree_threshold", "tree_left", "tree_right", "tree_value")
_INT_ARRAYS = ("tree_feature", "tree_left", "tree_right", "tree_roots", "tree_depth")
#: Shaped by the shipped token vectors (`embed`): checked against them on load.
_VECTOR_ARRAYS = ("token_weights", "meaning_coef")
_ARRAYS = tuple(_SHAPES) + _NODE_ARRAYS + ("tree_roots",) + _VECTOR_ARRAYS
#: Files whose contents define the fitted model (code and the shipped token vectors): changing any retrains.
_CODE_FILES = ("features.py", "estimator.py", "model.py", "data.py", "artifact.py", "embed.py", "data/vectors.npz")
_LIBRARIES = ("numpy", "scipy", "scikit-learn")


#: The prior fitted on the shipped data at release (`tools/router_data/make_prior.py`): a fresh home loads it
#: instead of training, when it was fitted with this code, data and libraries (its header says).
SHIPPED_NPZ = Path(__file__).resolve().parent / "data" / "prior.npz"
SHIPPED_HEADER = SHIPPED_NPZ.with_suffix(".json")


def router_dir(home: Path) -> Path:
    return home / "router"


def version(data_sha256: str) -> dict[str, str | int]:
    """What an artifact must have been trained with to be used: format, data and code versions."""
    code = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for name in _CODE_FILES:
        code.update(name.encode() + b"\0" + (here / name).read_bytes())
    for lib in _LIBRARIES:
        code.update(f"{lib}={metadata.version(lib)}\0".encode())
    return {"format": FORMAT, "data_sha256": data_sha256, "code_sha256": code.hexdigest()}


def _key(home: Path) -> bytes:
    """This home's signing secret, created on first use."""
    path = router_dir(home) / "key"
    if not path.exists():
        atomic_write(path, os.urandom(32))
    return path.read_bytes()


def _signature(key: bytes, header: dict) -> str:
    body = json.dumps({k: v for k, v in header.items() if k != "hmac"}, sort_keys=True).encode()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def to_npz(router: Router) -> bytes:
    """The arrays of `router` as .npz bytes, without timestamps (same weights, same bytes)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in _ARRAYS:
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w") as fh:
                np.lib.format.write_array(fh, np.ascontiguousarray(getattr(router, name)), allow_pickle=False)
    return buf.getvalue()


def save(home: Path, expected: dict, router: Router) -> None:
    """Write the artifact and its signed header (the header last: a crash leaves a stale pair)."""
    blob = to_npz(router)
    atomic_write(router_dir(home) / "model.npz", blob)
    header = dict(expected, npz_sha256=hashlib.sha256(blob).hexdigest())
    header["hmac"] = _signature(_key(home), header)
    atomic_write(router_dir(home) / "model.json", json.dumps(header, indent=2, sort_keys=True).encode())


def shipped_header(router: Router, expected: dict) -> bytes:
    """The header `load_shipped` checks: what the prior was fitted with and its arrays' sha256."""
    header = dict(expected, npz_sha256=hashlib.sha256(to_npz(router)).hexdigest())
    return json.dumps(header, indent=2, sort_keys=True).encode() + b"\n"


def load_shipped(expected: dict) -> Router | None:
    """The prior shipped in the package if it was fitted with `expected`'s code, data and libraries."""
    try:
        header = json.loads(SHIPPED_HEADER.read_text(encoding="utf-8"))
        blob = SHIPPED_NPZ.read_bytes()
    except (OSError, ValueError):
        return None
    if not isinstance(header, dict) or any(header.get(k) != v for k, v in expected.items()) \
            or header.get("npz_sha256") != hashlib.sha256(blob).hexdigest():
        return None
    return _from_npz(blob)


def load(home: Path, expected: dict) -> Router | None:
    """The cached Router if it matches `expected` and is broke's own, intact artifact; else None."""
    folder = router_dir(home)
    try:
        header = json.loads((folder / "model.json").read_text(encoding="utf-8"))
        blob = (folder / "model.npz").read_bytes()
        key = (folder / "key").read_bytes()
    except (OSError, ValueError):
        return None
    if not isinstance(header, dict) or any(header.get(k) != v for k, v in expected.items()):
        return None
    if not hmac.compare_digest(str(header.get("hmac", "")), _signature(key, header)):
        return None
    if header.get("npz_sha256") != hashlib.sha256(blob).hexdigest():
        return None
    return _from_npz(blob)


def _from_npz(blob: bytes) -> Router | None:
    """The Router in .npz bytes, if its arrays are well formed."""
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in _ARRAYS}
    except (OSError, ValueError, KeyError):
        return None
    return Router(**arrays) if _well_formed(arrays) else None


def _well_formed(arrays: dict[str, np.ndarray]) -> bool:
    """Shapes and kinds as Router needs them, and every tree index within its table."""
    if any(arrays[n].shape != s for n, s in _SHAPES.items()):
        return False
    if any(arrays[n].dtype.kind != ("i" if n in _INT_ARRAYS else "f") for n in _ARRAYS):
        return False
    vocab, dims = embed.load_vectors().vectors.shape
    meaning_inputs = dims + len(features.HAND_FEATURES)
    if arrays["token_weights"].shape != (vocab,) or arrays["meaning_coef"].shape != (meaning_inputs,):
        return False
    nodes = len(arrays["tree_value"])
    if nodes == 0 or any(arrays[n].shape != (nodes,) for n in _NODE_ARRAYS) or arrays["tree_roots"].ndim != 1 \
            or len(arrays["tree_roots"]) == 0:
        return False
    in_table = all(arrays[n].min() >= 0 and arrays[n].max() < nodes for n in ("tree_left", "tree_right", "tree_roots"))
    return (in_table and arrays["tree_feature"].min() >= 0 and arrays["tree_feature"].max() < N_TREE_INPUTS
            and 0 <= arrays["tree_depth"][0] < nodes)
