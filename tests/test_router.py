"""The complexity router: features, estimates, the cached artifact, tiers and RouteLLM's metrics."""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest

from broke.router import artifact, embed, features, model
from broke.router.data import (
    DATA_FILE,
    TRAIN_SPLITS,
    VALIDATION_FOLDS,
    data_version,
    load_rows,
    reference_prompts,
    validation_fold,
)
from broke.router.evaluate import CurvePoint, apgr, cpt, curve, evaluate
from broke.router.model import Estimate, Router
from broke.router.tiers import Thresholds, calibrate, temperature
from broke.routing.conversation import conversation_text
from broke.state.model import RouterConfig
from conftest import assert_one_error_line
from tools.router_data.make_data import write

TRIVIAL = ["rename this variable", "what is 2+2", "say hi"]
HARD = [
    "Refactor our multi-file Python service so that the worker pool, the job queue and the cache are "
    "safe under concurrency: there are race conditions between the asyncio event loop and the thread "
    "pool in scheduler.py, queue.py and cache.py. Explain the locking strategy, avoid deadlocks, and "
    "show the changes to each file with tests.",
    "Prove that there are infinitely many primes p such that p ≡ 3 (mod 4). Give a complete, rigorous proof.",
    "Design a globally distributed, multi-region system for a real-time collaborative document editor. "
    "Step by step: 1) choose a consistency model (CRDT vs OT) and justify it, 2) design the storage and "
    "replication layer, 3) handle offline edits and conflict resolution, 4) plan for fault tolerance and "
    "failover, 5) estimate latency and throughput at 10 million daily users, and 6) discuss the "
    "trade-offs and costs of each choice.",
]


@pytest.fixture(scope="session")
def router() -> Router:
    """The router trained on the shipped data, once per test session."""
    return model.train(load_rows())


@pytest.fixture(scope="session")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small data file (every 8th RouteLLM row, all Arena-Hard rows) that trains in about a second."""
    rows = load_rows()
    keep = [r for i, r in enumerate(rows) if r["source"] == "arena_hard_v2" or i % 8 == 0]
    path = tmp_path_factory.mktemp("data") / "small.jsonl.gz"
    write(keep, path)
    return path


@pytest.fixture
def trained_home(router: Router, broke_home: Path) -> Path:
    """$BROKE_HOME holding the session's router as its cached artifact, as `load_or_train` leaves it."""
    artifact.save(broke_home, artifact.version(data_version(DATA_FILE)), router)
    return broke_home


@pytest.fixture(autouse=True)
def fresh_process_cache():
    """Each test starts as a fresh process would: nothing loaded yet."""
    model.forget_loaded()
    yield
    model.forget_loaded()


# --- features -------------------------------------------------------------------------------


def test_request_path_hashes_exactly_like_the_vectorizer() -> None:
    prompts = [r["prompt"] for r in load_rows()[::400]] + ["", "hi", "```python\nprint(1)\n```", "é" * 9000]
    hashed, hand = features.batch_features(prompts)
    for i, prompt in enumerate(prompts):
        cols, one_hand = features.prompt_features(prompt)
        assert np.array_equal(np.sort(hashed[i].indices), cols)
        assert np.allclose(hashed[i].data, 1 / math.sqrt(len(cols))) if len(cols) else hashed[i].nnz == 0
        assert np.array_equal(one_hand, hand[i])


def test_hand_features_see_code_math_and_conversation_depth() -> None:
    def feature(text: str, name: str) -> float:
        return features.prompt_features(text)[1][features.HAND_FEATURES.index(name)]

    code = "Fix this:\n```python\ndef f(x):\n    return x+1\n```"
    assert feature(code, "code_fences") > feature("Fix this sentence.", "code_fences")
    assert feature(code, "code_lines") > 0
    assert feature(r"Compute $\frac{1}{2}$ and \int_0^1 x dx", "latex") > 0
    one = conversation_text(["hello"])
    three = conversation_text(["hello", "and then?", "and after that?"])
    assert feature(three, "turns") > feature(one, "turns") == 0
    long = "word " * 20000
    assert feature(long, "log_chars") == pytest.approx(math.log1p(len(long)))  # length sees the whole prompt


# --- estimates ------------------------------------------------------------------------------


def test_estimates_are_deterministic_and_in_range(router: Router) -> None:
    prompts = TRIVIAL + HARD
    first = [router.estimate(p) for p in prompts]
    assert first == [router.estimate(p) for p in prompts]
    for one, batch in zip(first, router.estimate_many(prompts), strict=True):
        assert np.allclose(list(one.to_dict().values()), list(batch.to_dict().values()), atol=1e-6)
        assert all(0.0 <= v <= 1.0 for v in one.to_dict().values())


def test_trivial_prompts_land_below_hard_ones(router: Router) -> None:
    trivial = [router.estimate(p) for p in TRIVIAL]
    hard = [router.estimate(p) for p in HARD]
    for field in ("p_strong", "answer_complexity"):
        assert max(getattr(e, field) for e in trivial) < min(getattr(e, field) for e in hard), field
    thresholds = calibrate(0.3, reference_prompts()[::4], router)
    assert all(thresholds.tier_for(e.p_strong) != "premium" for e in trivial)


def test_static_embeddings_carry_meaning_and_match_the_batch_path() -> None:
    vectors = embed.load_vectors()
    prompts = ["Write a Python function that sorts a list of numbers.",
               "Implement a sorting routine in Python for an array of integers.",
               "Write a short poem about autumn leaves falling in the park.", "", "é" * 9000]
    weights = embed.sif_weights([vectors.ids(features.tokens(p)) for p in prompts], len(vectors.vectors))
    batch = vectors.embed_many(prompts, weights)
    for i, prompt in enumerate(prompts):
        assert np.allclose(vectors.embed(vectors.ids(features.tokens(prompt)), weights), batch[i], atol=1e-6)
    assert batch[0] @ batch[1] > batch[0] @ batch[2] + 0.1
    assert not batch[3].any() and np.linalg.norm(batch[0]) == pytest.approx(1.0, abs=1e-5)


def test_wordpiece_splits_words_as_bert_does() -> None:
    vectors = embed.load_vectors()
    index = vectors.index
    assert list(vectors.ids(["the", "tokenization"])) == [index["the"], index["token"], index["##ization"]]
    assert list(vectors.ids(["\u2603" * 3, "x" * 101])) == [index[embed.UNKNOWN]] * 2


def test_drivers_explain_p_strong(router: Router) -> None:
    prompt = HARD[2]
    drivers = router.drivers(prompt)
    names = [name for name, _ in drivers]
    assert names[: len(model.BLEND)] == list(model.BLEND)
    assert all(name.removeprefix("feature ") in features.HAND_FEATURES for name in names[len(model.BLEND):])
    logit = sum(value for _, value in drivers[: len(model.BLEND)])
    assert router.estimate(prompt).p_strong == pytest.approx(
        1 / (1 + math.exp(-(logit * router.platt[0, 0] + router.platt[0, 1]))))


def test_code_bias_separates_code_requests(router: Router) -> None:
    code = router.estimate("Write a Python function that parses a CSV file and returns a list of dicts.")
    prose = router.estimate("Write a short poem about autumn leaves falling in the park.")
    assert code.code_bias > 0.5 > prose.code_bias


def test_two_fresh_trainings_give_identical_artifacts(small_data: Path, tmp_path: Path) -> None:
    rows = load_rows(small_data)
    assert artifact.to_npz(model.train(rows)) == artifact.to_npz(model.train(rows))
    model.load_or_train(tmp_path / "a", small_data)
    model.load_or_train(tmp_path / "b", small_data)
    a, b = (artifact.router_dir(tmp_path / h) for h in ("a", "b"))
    assert (a / "model.npz").read_bytes() == (b / "model.npz").read_bytes()


def test_tree_walk_matches_sklearn(router: Router) -> None:
    """The stored node table gives what the fitted HistGradientBoostingRegressor predicts."""
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(600, model.N_TREE_INPUTS))
    target = inputs[:, 0] * inputs[:, 3] + np.sin(inputs[:, -1]) + rng.normal(size=600) * 0.1
    fitted = model._boost(inputs, target, np.ones(600))
    walked = Router(**{**vars(router), **model._tree_arrays(fitted)})
    assert np.allclose(walked._trees(inputs), fitted.predict(inputs), rtol=0, atol=1e-9)
    assert np.array_equal(walked._trees(inputs[:1]), walked._trees(inputs)[:1])


# --- the cached artifact --------------------------------------------------------------------


def test_artifact_is_written_once_and_loaded_once_per_process(small_data: Path, broke_home: Path) -> None:
    first = model.load_or_train(data_path=small_data)  # default home: $BROKE_HOME
    folder = artifact.router_dir(broke_home)
    header = json.loads((folder / "model.json").read_text())
    assert header["data_sha256"] == data_version(small_data)
    assert oct((folder / "model.npz").stat().st_mode & 0o777) == "0o600"
    assert model.load_or_train(broke_home, small_data) is first  # same process: no reload
    (folder / "model.npz").unlink()
    assert model.load_or_train(broke_home, small_data) is first
    model.forget_loaded()
    reloaded = model.load_or_train(broke_home, small_data)  # "new process": rebuilt, same weights
    assert artifact.to_npz(reloaded) == artifact.to_npz(first)


def test_cache_is_rebuilt_when_the_data_changes(small_data: Path, broke_home: Path, tmp_path: Path) -> None:
    before = model.load_or_train(broke_home, small_data)
    changed = tmp_path / "changed.jsonl.gz"
    write([r for i, r in enumerate(load_rows(small_data)) if i % 5], changed)
    model.forget_loaded()
    after = model.load_or_train(broke_home, changed)
    header = json.loads((artifact.router_dir(broke_home) / "model.json").read_text())
    assert header["data_sha256"] == data_version(changed) != data_version(small_data)
    assert artifact.to_npz(after) != artifact.to_npz(before)


def test_cache_is_rebuilt_when_the_code_version_changes(small_data: Path, broke_home: Path) -> None:
    model.load_or_train(broke_home, small_data)
    expected = artifact.version(data_version(small_data))
    assert artifact.load(broke_home, expected) is not None
    assert artifact.load(broke_home, dict(expected, code_sha256="0" * 64)) is None


def test_tampered_or_foreign_artifact_is_refused_and_rebuilt(small_data: Path, broke_home: Path,
                                                             tmp_path: Path) -> None:
    genuine = model.load_or_train(broke_home, small_data)
    folder = artifact.router_dir(broke_home)
    expected = artifact.version(data_version(small_data))

    # Different weights, with the header's npz checksum updated to match but no valid signature.
    forged = Router(**{**vars(genuine), "bias": genuine.bias + 5.0})
    blob = artifact.to_npz(forged)
    (folder / "model.npz").write_bytes(blob)
    assert artifact.load(broke_home, expected) is None
    header = json.loads((folder / "model.json").read_text())
    header["npz_sha256"] = hashlib.sha256(blob).hexdigest()
    (folder / "model.json").write_text(json.dumps(header))
    assert artifact.load(broke_home, expected) is None
    model.forget_loaded()
    rebuilt = model.load_or_train(broke_home, small_data)
    assert np.array_equal(rebuilt.bias, genuine.bias)
    assert artifact.load(broke_home, expected) is not None

    # A complete, self-consistent artifact made by another home (another key) is not ours.
    other = tmp_path / "other"
    model.load_or_train(other, small_data)
    for name in ("model.npz", "model.json"):
        (folder / name).write_bytes((artifact.router_dir(other) / name).read_bytes())
    assert artifact.load(broke_home, expected) is None

    # Even correctly signed, a node table pointing outside itself is refused, not walked.
    broken = Router(**{**vars(genuine), "tree_left": genuine.tree_left + len(genuine.tree_value)})
    artifact.save(broke_home, expected, broken)
    assert artifact.load(broke_home, expected) is None
    # Nor are token weights for another vocabulary.
    artifact.save(broke_home, expected, Router(**{**vars(genuine), "token_weights": genuine.token_weights[:-1]}))
    assert artifact.load(broke_home, expected) is None

    # Even correctly signed, a pickled object array is never unpickled (allow_pickle=False).
    np.savez(folder / "model.npz", **{n: np.array([object()]) for n in vars(genuine)})
    header = dict(expected, npz_sha256=hashlib.sha256((folder / "model.npz").read_bytes()).hexdigest())
    header["hmac"] = artifact._signature((folder / "key").read_bytes(), header)
    (folder / "model.json").write_text(json.dumps(header))
    assert artifact.load(broke_home, expected) is None


# --- tiers ----------------------------------------------------------------------------------


@pytest.mark.parametrize("share", [0.1, 0.3, 0.5])
def test_calibrate_hits_the_requested_share(router: Router, share: float) -> None:
    reference = reference_prompts()[::3]
    thresholds = calibrate(share, reference, router)
    estimates = router.estimate_many(reference)
    tiers = [thresholds.tier_for(e.p_strong) for e in estimates]
    assert tiers.count("premium") / len(tiers) == pytest.approx(share, abs=0.01)
    assert thresholds.balanced_from == pytest.approx(thresholds.premium_from / 2)
    assert tiers.count("basic") > 0 and tiers.count("balanced") > 0


def test_default_thresholds_are_the_shipped_models_calibration(router: Router) -> None:
    """A new state's tiers start where `broke router calibrate --strong-share 0.3` puts them."""
    thresholds = calibrate(0.3, reference_prompts(), router)
    assert RouterConfig().premium_from == pytest.approx(thresholds.premium_from, abs=5e-4)
    assert RouterConfig().balanced_from == pytest.approx(thresholds.balanced_from, abs=5e-4)


def test_calibrate_edges_and_bad_input(router: Router) -> None:
    reference = TRIVIAL + HARD
    estimates = router.estimate_many(reference)
    assert all(calibrate(1.0, reference, router).tier_for(e.p_strong) == "premium" for e in estimates)
    assert all(calibrate(0.0, reference, router).tier_for(e.p_strong) != "premium" for e in estimates)
    with pytest.raises(ValueError):
        calibrate(1.5, reference, router)
    with pytest.raises(ValueError):
        calibrate(0.5, [], router)
    with pytest.raises(ValueError):
        Thresholds(balanced_from=0.6, premium_from=0.3)


def test_tier_for_and_temperature_boundaries() -> None:
    thresholds = Thresholds(balanced_from=0.2, premium_from=0.4)

    def est(p_strong: float = 0.0, prompt_complexity: float = 0.0) -> Estimate:
        return Estimate(prompt_complexity, 0.0, 0.0, p_strong)

    assert [thresholds.tier_for(est(p).p_strong) for p in (0.0, 0.199, 0.2, 0.399, 0.4, 1.0)] == [
        "basic", "basic", "balanced", "balanced", "premium", "premium"]
    assert [temperature(est(prompt_complexity=c)) for c in (0.0, 0.199, 0.2, 0.499, 0.5, 0.799, 0.8, 1.0)] == [
        "green", "green", "yellow", "yellow", "orange", "orange", "red", "red"]


# --- RouteLLM's metrics ---------------------------------------------------------------------


def _toy(n: int = 1000, gains: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Weak 0 / strong 1 on the first `gains` prompts, both 1 elsewhere (the weak model is never better)."""
    weak = np.ones(n)
    weak[:gains] = 0.0
    return weak, np.ones(n)


def test_apgr_of_oracle_is_one_and_of_weak_only_is_zero() -> None:
    weak, strong = _toy()
    oracle = (strong - weak) - np.arange(len(weak)) * 1e-9  # unique scores, gain first
    full = len(weak)
    assert evaluate(oracle, weak, strong, points=full).apgr == pytest.approx(1.0, abs=1e-3)
    assert evaluate(-oracle, weak, strong, points=full).apgr == pytest.approx(0.0, abs=1e-3)
    assert evaluate(oracle, weak, strong, points=full).cpt50 == pytest.approx(0.0005, abs=1e-4)
    wq, sq = float(weak.mean()), float(strong.mean())
    flat_weak = [CurvePoint(1 - x, x, wq) for x in (0.0, 0.5, 1.0)]
    flat_strong = [CurvePoint(1 - x, x, sq) for x in (0.0, 0.5, 1.0)]
    assert apgr(flat_weak, wq, sq) == 0.0
    assert apgr(flat_strong, wq, sq) == 1.0


def test_apgr_and_cpt_by_hand_and_for_a_random_router() -> None:
    weak, strong = _toy(n=100, gains=20)
    oracle = (strong - weak) - np.arange(100) * 1e-9
    # Full sweep: the curve rises linearly over the first 20% then stays at strong quality.
    assert evaluate(oracle, weak, strong, points=100).apgr == pytest.approx(1 - 0.2 / 2, abs=1e-9)
    # RouteLLM's 10 bins: points at 0%, 10%, 20%, … give the same area here.
    q = evaluate(oracle, weak, strong)
    assert [p.strong_share for p in q.curve] == pytest.approx([i / 10 for i in range(11)])
    assert q.apgr == pytest.approx(0.9) and q.cpt50 == pytest.approx(0.1) and q.cpt80 == pytest.approx(0.16)
    rng = np.random.default_rng(1234)  # not a router seed below: seed 0 would replay these draws
    weak, strong = (rng.random(5000) < 0.6).astype(float), (rng.random(5000) < 0.8).astype(float)
    randoms = [evaluate(np.random.default_rng(s).random(5000), weak, strong).apgr for s in range(5)]
    assert np.mean(randoms) == pytest.approx(0.5, abs=0.03)


def test_curve_follows_routellm_thresholds() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.4])
    weak, strong = np.array([1.0, 0.0, 0.0, 1.0]), np.array([0.0, 1.0, 1.0, 1.0])
    points = curve(scores, weak, strong, points=4)
    assert [p.strong_share for p in points] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert [p.quality for p in points] == [0.5, 0.5, 0.75, 1.0, 0.75]
    assert cpt(points, 0.5, 0.75, 0.5) == pytest.approx(0.375)


# --- router eval --plot ---------------------------------------------------------------------


def test_explain_auto_says_what_drove_the_tier(cli, trained_home: Path) -> None:
    result = cli("explain", "auto", "--prompt", HARD[0])
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if "driven by" in line)
    assert all(part in line for part in model.BLEND) and "feature " in line


def test_router_eval_plots_the_curve(cli, trained_home: Path, tmp_path: Path) -> None:
    png = tmp_path / "curve.png"
    result = cli("router", "eval", "--plot", str(png))
    assert result.exit_code == 0, result.output
    assert "APGR" in result.output and "plot written to" in result.output
    assert png.stat().st_size > 1000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("name, fragment", [("curve.txt", "must end in .png"), ("missing/curve.png", "does not exist")])
def test_router_eval_plot_refuses_a_bad_path(cli, trained_home: Path, tmp_path: Path, name: str,
                                             fragment: str) -> None:
    target = tmp_path / name
    assert_one_error_line(cli("router", "eval", "--plot", str(target)), "--plot", fragment)
    assert not target.exists()


# --- the shipped data -----------------------------------------------------------------------


def test_validation_folds_are_stable_and_even() -> None:
    rows = [r for r in load_rows() if r["split"] in TRAIN_SPLITS]
    folds = np.array([validation_fold(r) for r in rows])
    assert np.array_equal(folds, [validation_fold(dict(r)) for r in rows])  # a hash, not an order
    shares = np.bincount(folds, minlength=VALIDATION_FOLDS) / len(rows)
    assert np.allclose(shares, 1 / VALIDATION_FOLDS, atol=0.02)
    assert not np.array_equal(folds, [validation_fold(r, "rep1") for r in rows])
