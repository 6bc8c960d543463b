"""The experiment math (lsd.inference.experiment) and the sampling it drives (routing.order_variants)."""

from __future__ import annotations

import math
import random
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lsd.config.loader import parse
from lsd.config.model import ExperimentationConfig, FunctionConfig, MetricConfig, VariantConfig
from lsd.errors import ConfigError
from lsd.ids import uuid7
from lsd.inference.dynamic_variant import DYNAMIC_VARIANT_NAME, parse_dynamic_variant, with_dynamic_variant
from lsd.inference.experiment import (
    Allocation,
    Allocations,
    ArmStats,
    allocate,
    fingerprint,
    promised_samples,
    radius,
    report,
    sampling_plan,
)
from lsd.inference.routing import order_variants
from lsd.types import InferenceParams

NOW = datetime(2026, 12, 6, tzinfo=UTC)
SUCCESS = MetricConfig(name="success", type="boolean", optimize="max", level="inference")
MISTAKES = MetricConfig(name="mistakes", type="float", optimize="min", level="inference")


def adaptive(*names: str, **keys: float) -> ExperimentationConfig:
    return ExperimentationConfig(
        type="adaptive",
        candidate_variants=dict.fromkeys(names, 1.0),
        metric="success",
        **keys,  # type: ignore[arg-type]
    )


def function(
    experiment: ExperimentationConfig | None, *names: str, weights: dict[str, float] | None = None
) -> FunctionConfig:
    weights = weights or {}
    variants = {
        n: VariantConfig(
            name=n, type="chat_completion", model="dummy::echo", weight=weights.get(n), params=InferenceParams()
        )
        for n in names
    }
    return FunctionConfig(name="f", type="chat", variants=variants, experimentation=experiment)


def bernoulli(successes: int, n: int) -> ArmStats:
    return ArmStats(n, float(successes), float(successes))


def test_radius_is_anytime_valid_by_construction_and_shrinks() -> None:
    # sum over n of 2 * exp(-2 n r(n)^2) for sigma = 1/2 is sum 2 * delta / (4 k n^2) < delta / k
    k, delta = 2, 0.05
    total = sum(2 * math.exp(-2 * n * radius(n, 0.5, k, delta) ** 2) for n in range(1, 100_000))
    assert total < delta / k
    assert all(radius(n, 0.5, k, delta) > radius(n + 1, 0.5, k, delta) for n in range(1, 1000))
    assert radius(0, 0.5, k, delta) == math.inf


def test_promised_samples_is_the_first_count_under_the_threshold() -> None:
    n = promised_samples(0.6, 0.5, 2, 0.05)
    assert radius(n, 0.5, 2, 0.05) < 0.6 / 4 <= radius(n - 1, 0.5, 2, 0.05)
    assert promised_samples(0.2, 0.5, 2, 0.05) > n  # a smaller gap takes more samples
    assert promised_samples(0.6, 0.5, 2, 0.05, epsilon=0.2) < n  # a tolerance takes fewer
    with pytest.raises(ValueError):
        promised_samples(0.0, 0.5, 2, 0.05)


def test_explores_uniformly_until_every_candidate_has_its_minimum() -> None:
    config = adaptive("a", "b", "c", min_samples_per_variant=10)
    got = allocate(
        "f", config, SUCCESS, {"a": bernoulli(9, 10), "b": bernoulli(1, 10), "c": bernoulli(5, 9)}, None, NOW
    )
    assert got.phase == "explore" and got.weights == pytest.approx({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})
    assert got.evidence["c"].count == 9 and got.fingerprint == fingerprint(config)


def test_shifts_traffic_to_the_better_candidate_with_a_floor() -> None:
    config = adaptive("a", "b", min_prob=0.1)
    got = allocate("f", config, SUCCESS, {"a": bernoulli(12, 20), "b": bernoulli(8, 20)}, None, NOW)
    assert got.phase == "bandit"
    assert sum(got.weights.values()) == pytest.approx(1.0)
    assert got.weights["a"] > 0.5 > got.weights["b"] >= 0.1
    assert got.evidence["a"].p_best is not None and got.evidence["a"].p_best > 0.5
    again = allocate("f", config, SUCCESS, {"a": bernoulli(12, 20), "b": bernoulli(8, 20)}, None, NOW)
    assert again.weights == got.weights  # seeded: every replica would compute the same


def test_stops_on_the_winner_once_the_bounds_separate() -> None:
    config = adaptive("a", "b")
    got = allocate("f", config, SUCCESS, {"a": bernoulli(90, 100), "b": bernoulli(20, 100)}, None, NOW)
    assert got.stopped and got.winner == "a" and got.weights == {"a": 1.0, "b": 0.0} and got.stopped_at == NOW
    a, b = got.evidence["a"], got.evidence["b"]
    assert a.lower is not None and b.upper is not None and a.lower > b.upper
    # stopped stays stopped, with the evidence it stopped on, whatever comes later
    later = allocate("f", config, SUCCESS, {"a": bernoulli(90, 300), "b": bernoulli(290, 300)}, got, NOW)
    assert later.winner == "a" and later.evidence == got.evidence
    # until the experiment's config changes: then it starts over from the statistics
    changed = adaptive("a", "b", delta=0.01)
    assert allocate("f", changed, SUCCESS, {"a": bernoulli(90, 300), "b": bernoulli(290, 300)}, got, NOW).winner == "b"


def test_epsilon_stops_between_near_equals() -> None:
    stats = {"a": bernoulli(160, 200), "b": bernoulli(156, 200)}
    assert allocate("f", adaptive("a", "b"), SUCCESS, stats, None, NOW).phase == "bandit"
    assert allocate("f", adaptive("a", "b", epsilon=0.5), SUCCESS, stats, None, NOW).stopped


def test_min_metrics_prefer_the_lower_mean() -> None:
    config = ExperimentationConfig(type="adaptive", candidate_variants={"a": 1.0, "b": 1.0}, metric="mistakes")

    # a: mistakes around 5 (sd ~1), b: around 1 (sd ~1), 200 samples each
    def arm(mean: float, n: int) -> ArmStats:
        return ArmStats(n, mean * n, (mean * mean + 1.0) * n)

    got = allocate("f", config, MISTAKES, {"a": arm(5.0, 200), "b": arm(1.0, 200)}, None, NOW)
    assert got.stopped and got.winner == "b"


def test_a_clearly_worse_third_candidate_is_eliminated_and_stays_out() -> None:
    config = adaptive("a", "b", "c")
    stats = {"a": bernoulli(70, 100), "b": bernoulli(66, 100), "c": bernoulli(2, 100)}
    got = allocate("f", config, SUCCESS, stats, None, NOW)
    assert got.phase == "bandit" and got.evidence["c"].eliminated and got.weights["c"] == 0.0
    assert got.weights["a"] + got.weights["b"] == pytest.approx(1.0)
    back = {**stats, "c": bernoulli(100, 100)}  # even if c then looks good, it stays out
    assert allocate("f", config, SUCCESS, back, got, NOW).evidence["c"].eliminated


def test_static_uniform_and_legacy_sampling_plans() -> None:
    def names(f: FunctionConfig) -> tuple[list[tuple[str, float]], list[str]]:
        plan = sampling_plan(f)
        return [(v.name, w) for v, w in plan.candidates], [v.name for v in plan.fallbacks]

    static = ExperimentationConfig(type="static", candidate_variants={"a": 5.0, "b": 1.0}, fallback_variants=("c",))
    assert names(function(static, "a", "b", "c")) == ([("a", 5.0), ("b", 1.0)], ["c"])
    uniform = ExperimentationConfig(type="static", candidate_variants={"a": 1.0, "c": 1.0})
    assert names(function(uniform, "a", "b", "c")) == ([("a", 1.0), ("c", 1.0)], [])
    legacy = function(None, "a", "b", "c", weights={"a": 1.0, "b": 0.0})
    assert names(legacy) == ([("a", 1.0)], ["c"])
    assert report(legacy, {}, None).source == "variant_weights"
    assert report(legacy, {}, None).weights == {"a": 1.0, "b": 0.0}
    assert report(legacy, {}, None).fallbacks == ("c",)


def test_static_weights_are_honoured_and_episodes_are_sticky() -> None:
    static = ExperimentationConfig(type="static", candidate_variants={"a": 3.0, "b": 1.0}, fallback_variants=("c",))
    f = function(static, "a", "b", "c")
    firsts = Counter(order_variants(f, uuid7(), None)[0].name for _ in range(4000))
    assert set(firsts) == {"a", "b"} and 0.70 < firsts["a"] / 4000 < 0.80
    episode = uuid7()
    orders = {tuple(v.name for v in order_variants(f, episode, None)) for _ in range(50)}
    assert {o[0] for o in orders} == {order_variants(f, episode, None)[0].name}  # the same first variant
    assert all(o[-1] == "c" and len(o) == 3 for o in orders)  # candidates, then the fallback


def test_adaptive_uses_the_stored_weights_only_for_its_own_config() -> None:
    config = adaptive("a", "b", "c")
    f = function(config, "a", "b", "c")
    stopped = Allocation("f", {"a": 0.0, "b": 1.0, "c": 0.0}, "stopped", winner="b", fingerprint=fingerprint(config))
    assert {order_variants(f, uuid7(), None, stopped)[0].name for _ in range(200)} == {"b"}
    stale = Allocation("f", {"a": 0.0, "b": 1.0, "c": 0.0}, "stopped", winner="b", fingerprint="other")
    cache = Allocations()
    cache.replace_all([stale], {"f": config})  # computed for another version of the experiment: not kept
    assert cache.get("f") is None
    assert {order_variants(f, uuid7(), None, cache.get("f"))[0].name for _ in range(300)} == {"a", "b", "c"}
    cache.replace_all([stopped], {"f": config})
    assert cache.get("f") == stopped
    cache.replace_all([stopped], {})  # no longer an adaptive experiment in the config
    assert cache.get("f") is None
    assert report(f, {"success": SUCCESS}, stale).source == "default"
    assert report(f, {"success": SUCCESS}, stale).weights == {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}
    assert report(f, {"success": SUCCESS}, stopped).winner == "b"


def test_simulated_experiment_stops_on_the_better_arm_within_the_promise() -> None:
    """Pure simulation: inferences sampled by order_variants, Bernoulli feedback, an update every 20 samples."""
    rates = {"good": 0.8, "bad": 0.4}
    config = adaptive("good", "bad", min_samples_per_variant=10)
    f = function(config, "good", "bad")
    promise = promised_samples(0.4, 0.5, 2, config.delta)
    rng = random.Random(7)
    counts, wins = Counter[str](), Counter[str]()
    allocation: Allocation | None = None
    shifted = False
    for step in range(1, 20_000):
        variant = order_variants(f, uuid7(), None, allocation)[0].name
        counts[variant] += 1
        wins[variant] += rng.random() < rates[variant]
        if step % 20:
            continue
        stats = {n: bernoulli(wins[n], counts[n]) for n in rates}
        allocation = allocate("f", config, SUCCESS, stats, allocation, NOW)
        shifted |= allocation.phase == "bandit" and allocation.weights["good"] > 0.6
        if allocation.stopped:
            break
        assert min(counts.values()) < promise  # the promise: stopped by the update where both have `promise`
    assert allocation is not None and allocation.stopped and allocation.winner == "good"
    assert shifted


CONFIG = """
[metrics.success]
type = "boolean"
optimize = "max"
level = "inference"
[functions.f]
type = "chat"
[functions.f.variants.a]
type = "chat_completion"
model = "dummy::echo"
[functions.f.variants.b]
type = "chat_completion"
model = "dummy::echo"
[functions.f.experimentation]
"""


@pytest.mark.parametrize(
    ("table", "error"),
    [
        (
            'type = "adaptive"\nmetric = "success"\ncandidate_variants = { a = 1.0, b = 2.0 }\n',
            "functions.f.experimentation.candidate_variants: an adaptive experiment takes a list of variant names",
        ),
        (
            'type = "static"\n[functions.f.experimentation.namespaces.acme]\ntype = "adaptive"\nmetric = "success"\n'
            'candidate_variants = ["a", "b"]\n',
            "functions.f.experimentation.namespaces.acme.type: LSD runs adaptive experiments per function",
        ),
        (
            'type = "static"\ncandidate_variants = { a = 0, b = 0.0 }\n',
            "functions.f.experimentation.candidate_variants: every weight is 0",
        ),
        (
            'type = "adaptive"\nmetric = "success"\ncandidate_variants = ["a", "b"]\nmin_prob = 0.6\n',
            "functions.f.experimentation.min_prob: times the number of candidate_variants must not exceed 1",
        ),
        (
            'type = "track_and_stop"\nmetric = "success"\ncandidate_variants = ["a", "b"]\ndelta = 1.5\n',
            "functions.f.experimentation.delta: must be between 0 and 1",
        ),
        (
            'type = "adaptive"\nmetric = "success"\ncandidate_variants = []\n',
            "functions.f.experimentation.candidate_variants: an empty list names no variant",
        ),
        (
            'type = "static"\ncandidate_variants = ["a", "a", "b"]\n',
            "functions.f.experimentation.candidate_variants: names 'a' more than once",
        ),
    ],
)
def test_experimentation_keys_lsd_cannot_honour_are_refused(table: str, error: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(CONFIG + table, base_dir=Path("."))
    assert any(e.startswith(error) for e in caught.value.errors), caught.value.errors


def test_track_and_stop_reads_as_adaptive_with_tensorzero_defaults() -> None:
    config = parse(
        CONFIG + 'type = "track_and_stop"\nmetric = "success"\ncandidate_variants = ["a", "b"]\n', base_dir=Path(".")
    )
    experiment = config.functions["f"].experimentation
    assert experiment is not None and experiment.type == "adaptive"
    assert (experiment.delta, experiment.epsilon, experiment.min_prob) == (0.05, 0.0, 0.0)
    assert (experiment.min_samples_per_variant, experiment.update_period_s) == (10, 300)


def test_a_dynamic_variant_runs_whatever_the_experiment() -> None:
    config = adaptive("a", "b")
    f = function(config, "a", "b")
    dynamic = with_dynamic_variant(f, parse_dynamic_variant({"type": "chat_completion", "model": "dummy::echo"}))
    assert dynamic.experimentation is None
    assert [v.name for v in order_variants(dynamic, uuid7(), None)] == [DYNAMIC_VARIANT_NAME]


def test_an_episode_variant_comes_first_while_it_can_be_sampled() -> None:
    config = adaptive("a", "b", "c")
    f = function(config, "a", "b", "c")
    moving = Allocation("f", {"a": 0.01, "b": 0.01, "c": 0.98}, "bandit", fingerprint=fingerprint(config))
    assert {order_variants(f, uuid7(), None, moving, None, "a")[0].name for _ in range(50)} == {"a"}
    assert sorted(v.name for v in order_variants(f, uuid7(), None, moving, None, "a")) == ["a", "b", "c"]
    stopped = Allocation("f", {"a": 0.0, "b": 0.0, "c": 1.0}, "stopped", winner="c", fingerprint=fingerprint(config))
    assert [v.name for v in order_variants(f, uuid7(), None, stopped, None, "a")] == ["c"]  # a lost: no longer sticky
    assert [v.name for v in order_variants(f, uuid7(), "b", stopped, None, "a")] == ["b"]  # a pin wins
