"""Fit the router's prior on the shipped data and write it into the package, so that a fresh home
decides its first `auto` request without training (`broke.router.artifact.load_shipped`).

Dev only. Run from the checkout root after changing the router's code, data or pinned libraries
(tests/test_router_learning.py fails while the shipped prior is stale):

    .venv/bin/python -m tools.router_data.make_prior

Writes `broke/router/data/prior.npz` (the arrays, byte-identical for the same fit) and `prior.json`
(the code, data and library versions it was fitted with, and the arrays' sha256).
"""
from __future__ import annotations

from broke.fileio import atomic_write
from broke.router import artifact, model
from broke.router.data import DATA_FILE, data_version, load_rows


def main() -> None:
    router = model.train(load_rows(DATA_FILE))
    expected = artifact.version(data_version(DATA_FILE))
    atomic_write(artifact.SHIPPED_NPZ, artifact.to_npz(router))
    atomic_write(artifact.SHIPPED_HEADER, artifact.shipped_header(router, expected))
    print(f"wrote {artifact.SHIPPED_NPZ} ({artifact.SHIPPED_NPZ.stat().st_size / 1e6:.2f} MB) and its header")


if __name__ == "__main__":
    main()
