"""Fixtures for tests of the `auto` router as the gateway uses it: a small prior, cached in $BROKE_HOME.

Used as a pytest plugin: `pytest_plugins = ("router_prior",)`.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from broke.router import artifact, model
from broke.router.data import DATA_FILE, data_version, load_rows
from tools.router_data.make_data import write


@pytest.fixture(scope="module")
def prior(tmp_path_factory: pytest.TempPathFactory) -> model.Router:
    """A prior fitted in a few seconds (every 8th RouteLLM row, all Arena-Hard rows)."""
    rows = load_rows()
    path = tmp_path_factory.mktemp("data") / "small.jsonl.gz"
    write([r for i, r in enumerate(rows) if r["source"] == "arena_hard_v2" or i % 8 == 0], path)
    return model.train(load_rows(path))


@pytest.fixture
def home(prior: model.Router, broke_home: Path) -> Iterator[Path]:
    """$BROKE_HOME with that prior as its cached artifact, as `load_or_train` would leave it."""
    artifact.save(broke_home, artifact.version(data_version(DATA_FILE)), prior)
    model.forget_loaded()
    yield broke_home
    model.forget_loaded()
