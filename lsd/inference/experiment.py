"""Variant sampling for `[functions.F.experimentation]`: which variants an inference may sample, with what weights,
and the adaptive rule that turns per-variant feedback into weights (docs/experiments.md, "## Experimentation").

Everything here is pure: the job (lsd.jobs.experiments) feeds it the statistics and stores the result; every
replica keeps the stored allocations in an `Allocations` cache that routing reads.

The adaptive rule, in reward space (the metric, negated when `optimize = "min"`):
- explore: until every candidate has `min_samples_per_variant` feedback samples, weights are uniform;
- confidence bounds, valid at every update at once (a union bound over arms and sample counts):
  `radius(n) = sigma * sqrt(2 * ln(4 * K * n^2 / delta) / n)`, sigma = 1/2 for boolean metrics (Hoeffding), the
  sample standard deviation for float metrics (a plug-in, sub-Gaussian approximation);
- elimination: a candidate whose upper bound is below the leader's lower bound is out for good;
- stop: when the leader's lower bound beats every other active candidate's upper bound minus `epsilon`, the leader
  is the winner (weight 1.0), with probability at least 1 - delta within `epsilon` of the best;
- otherwise each active candidate gets half of an even share plus half its probability of being the best (a
  normal approximation, estimated with a fixed-seed draw so every run gives the same weights), then every candidate
  is lifted to at least `min_prob`.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal, NamedTuple

from lsd.config.model import ExperimentationConfig, FunctionConfig, MetricConfig, VariantConfig
from lsd.store.experiments import AllocationRow

Phase = Literal["static", "explore", "bandit", "stopped"]

BOOLEAN_SIGMA = 0.5  # a [0, 1] variable is 1/2-sub-Gaussian (Hoeffding)
DRAWS = 4000  # posterior draws for the probability of being the best
SEED = 0x4C5344  # fixed: the same statistics always give the same weights
NAMESPACE_TAG = "tensorzero::namespace"  # where a request's `namespace` travels


@dataclass(frozen=True, slots=True)
class ArmStats:
    """One candidate's feedback for the experiment's metric: count, sum, sum of squares (as the statistics hold)."""

    count: int
    total: float = 0.0
    squares: float = 0.0

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    @property
    def std(self) -> float | None:
        if self.count < 2:
            return None
        variance = max(self.squares - self.total * self.total / self.count, 0.0) / (self.count - 1)
        return math.sqrt(variance)


@dataclass(frozen=True, slots=True)
class ArmEvidence:
    """What the allocation saw of one candidate: the metric's mean and its confidence interval (metric units)."""

    count: int
    mean: float | None = None
    lower: float | None = None
    upper: float | None = None
    eliminated: bool = False
    p_best: float | None = None


@dataclass(frozen=True, slots=True)
class Allocation:
    """A function's sampling weights over its candidates, how they were reached, and when."""

    function_name: str
    weights: Mapping[str, float]
    phase: Phase
    evidence: Mapping[str, ArmEvidence] = field(default_factory=dict)
    winner: str | None = None
    stopped_at: datetime | None = None
    updated_at: datetime | None = None
    fingerprint: str = ""  # the experiment config this was computed for (a changed config starts over)

    @property
    def stopped(self) -> bool:
        return self.phase == "stopped"


def fingerprint(config: ExperimentationConfig) -> str:
    """The experiment keys an adaptive allocation depends on: change one and the experiment starts over."""
    keys = (
        config.type,
        tuple(config.candidate_variants),
        config.metric,
        config.delta,
        config.epsilon,
        config.min_prob,
        config.min_samples_per_variant,
    )
    return hashlib.sha256(repr(keys).encode()).hexdigest()[:16]


def radius(n: int, sigma: float, k: int, delta: float) -> float:
    """The half-width of an arm's confidence interval after `n` samples, valid for every n and all `k` arms at
    once with probability 1 - delta: P(some |mean_n - mu| > radius(n)) <= sum_n 2 delta / (4 k n^2) < delta / k."""
    if n < 1:
        return math.inf
    return sigma * math.sqrt(2.0 * math.log(4.0 * k * n * n / delta) / n)


def promised_samples(gap: float, sigma: float, k: int, delta: float, epsilon: float = 0.0) -> int:
    """The promise: with probability >= 1 - delta the experiment has stopped at the first update at which every
    active candidate has this many samples, when the best candidate's mean beats the second's by `gap`.

    Every active arm's bound is within 2 * radius(n) of its true mean there, so the leader is the best once
    2 * radius < gap, and its lower bound beats the others' upper bounds minus epsilon once
    4 * radius < gap + epsilon (or at once when 2 * radius < epsilon)."""
    threshold = max(min((gap + epsilon) / 4.0, gap / 2.0), epsilon / 2.0)
    if threshold <= 0:
        raise ValueError("no promise without a gap or an epsilon")
    n = 1
    while radius(n, sigma, k, delta) >= threshold:  # radius decreases in n (4 k / delta > e^2)
        n *= 2
    low, high = n // 2, n
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if radius(mid, sigma, k, delta) >= threshold else (low, mid)
    return high


def allocate(
    function_name: str,
    config: ExperimentationConfig,
    metric: MetricConfig,
    stats: Mapping[str, ArmStats],
    previous: Allocation | None,
    now: datetime,
) -> Allocation:
    """The next allocation of an adaptive experiment from its candidates' statistics. A stopped experiment stays
    stopped (with the evidence it stopped on) while its config is unchanged; eliminations are kept likewise."""
    fp = fingerprint(config)
    if previous is not None and previous.fingerprint != fp:
        previous = None
    if previous is not None and previous.stopped:
        return replace(previous, updated_at=now)
    names = list(config.candidate_variants)
    k = len(names)
    sign = 1.0 if metric.optimize == "max" else -1.0
    arms = {name: stats.get(name, ArmStats(0)) for name in names}
    sigmas = {name: _sigma(metric, arm) for name, arm in arms.items()}
    radii = {name: radius(arm.count, sigmas[name], k, config.delta) for name, arm in arms.items()}
    was_out = {n for n, e in (previous.evidence.items() if previous else ()) if e.eliminated}

    def evidence(eliminated: set[str], p_best: Mapping[str, float]) -> dict[str, ArmEvidence]:
        out = {}
        for name, arm in arms.items():
            mean, r = arm.mean, radii[name]
            finite = mean is not None and math.isfinite(r)
            out[name] = ArmEvidence(
                count=arm.count,
                mean=mean,
                lower=mean - r if finite and mean is not None else None,
                upper=mean + r if finite and mean is not None else None,
                eliminated=name in eliminated,
                p_best=p_best.get(name),
            )
        return out

    if k < 2 or any(arm.count < config.min_samples_per_variant for arm in arms.values()):
        weights = dict.fromkeys(names, 1.0 / k) if k else {}
        return Allocation(function_name, weights, "explore", evidence(was_out, {}), updated_at=now, fingerprint=fp)
    reward = {name: sign * (arm.mean or 0.0) for name, arm in arms.items()}
    active = [name for name in names if name not in was_out]
    leader = max(active, key=lambda name: reward[name])  # max keeps the first of equals: config order
    low = reward[leader] - radii[leader]
    out = set(was_out) | {n for n in active if n != leader and reward[n] + radii[n] < low}
    active = [name for name in active if name not in out]
    if all(reward[n] + radii[n] - config.epsilon < low for n in active if n != leader):
        weights = {name: 1.0 if name == leader else 0.0 for name in names}
        return Allocation(
            function_name,
            weights,
            "stopped",
            evidence(out, {}),
            winner=leader,
            stopped_at=now,
            updated_at=now,
            fingerprint=fp,
        )
    p_best = best_probabilities({n: (reward[n], _std_error(metric, arms[n])) for n in active})
    share = {n: 0.5 / len(active) + 0.5 * p_best[n] for n in active}
    floor = config.min_prob
    weights = {name: floor + (1.0 - k * floor) * share.get(name, 0.0) for name in names}
    return Allocation(function_name, weights, "bandit", evidence(out, p_best), updated_at=now, fingerprint=fp)


def best_probabilities(posteriors: Mapping[str, tuple[float, float]]) -> dict[str, float]:
    """P(arm is the best) under independent normal posteriors (mean, standard error), from DRAWS seeded draws."""
    names = list(posteriors)
    rng = random.Random(SEED)
    wins = dict.fromkeys(names, 0)
    for _ in range(DRAWS):
        best = max(names, key=lambda n: rng.gauss(posteriors[n][0], posteriors[n][1]))
        wins[best] += 1
    return {name: wins[name] / DRAWS for name in names}


def _sigma(metric: MetricConfig, arm: ArmStats) -> float:
    if metric.type == "boolean":
        return BOOLEAN_SIGMA
    std = arm.std
    return math.inf if std is None else std


def _std_error(metric: MetricConfig, arm: ArmStats) -> float:
    """The posterior's standard deviation: Beta(1 + successes, 1 + failures) for booleans, s / sqrt(n) for floats."""
    n = arm.count
    if metric.type == "boolean":
        p = (arm.total + 1.0) / (n + 2.0)
        return math.sqrt(p * (1.0 - p) / (n + 3.0))
    std = arm.std
    return (std if std is not None else 1.0) / math.sqrt(max(n, 1))


def to_row(allocation: Allocation) -> AllocationRow:
    assert allocation.updated_at is not None
    return AllocationRow(
        function_name=allocation.function_name,
        weights=dict(allocation.weights),
        phase=allocation.phase,
        evidence={name: _evidence_json(e) for name, e in allocation.evidence.items()},
        stopped=allocation.stopped,
        winner=allocation.winner,
        stopped_at=allocation.stopped_at,
        fingerprint=allocation.fingerprint,
        updated_at=allocation.updated_at,
    )


def from_row(row: AllocationRow) -> Allocation:
    phase: Phase = row.phase if row.phase in ("explore", "bandit", "stopped") else "explore"  # type: ignore[assignment]
    return Allocation(
        function_name=row.function_name,
        weights={name: float(w) for name, w in row.weights.items()},
        phase=phase,
        evidence={name: ArmEvidence(**e) for name, e in row.evidence.items()},
        winner=row.winner,
        stopped_at=row.stopped_at,
        updated_at=row.updated_at,
        fingerprint=row.fingerprint,
    )


def _evidence_json(e: ArmEvidence) -> dict[str, object]:
    return {
        "count": e.count,
        "mean": e.mean,
        "lower": e.lower,
        "upper": e.upper,
        "eliminated": e.eliminated,
        "p_best": e.p_best,
    }


# -- sampling plan -------------------------------------------------------------------------------------------


class SamplingPlan(NamedTuple):
    """The variants an inference samples from (with weight > 0, in config order), then its fallbacks in order
    (`shuffle_fallbacks`: adaptive experiments try their fallbacks in a random order, as TensorZero's). A tuple:
    routing builds one per request."""

    candidates: list[tuple[VariantConfig, float]]
    fallbacks: list[VariantConfig]
    shuffle_fallbacks: bool = False


def experiment_of(function: FunctionConfig, namespace: str | None = None) -> ExperimentationConfig | None:
    """The function's experiment, or its `namespaces.<namespace>` override for a request in that namespace."""
    experiment = function.experimentation
    if experiment is not None and namespace is not None:
        return experiment.namespaces.get(namespace, experiment)
    return experiment


def sampling_plan(
    function: FunctionConfig, namespace: str | None = None, allocation: Allocation | None = None
) -> SamplingPlan:
    """What routing samples from. Without an experimentation table: the variants' legacy `weight` (none at all:
    every variant evenly; weight 0: never; no weight: a fallback). Static: `candidate_variants` as weighted.
    Adaptive: `allocation`'s weights (one computed for this experiment: `Allocations` keeps no other), uniform over
    the candidates until there is one."""
    experiment = function.experimentation
    if experiment is None:
        variants = function.variants.values()
        if all(v.weight is None for v in variants):
            return SamplingPlan([(v, 1.0) for v in variants], [])
        return SamplingPlan([(v, v.weight) for v in variants if v.weight], [v for v in variants if v.weight is None])
    if namespace is not None:
        experiment = experiment.namespaces.get(namespace, experiment)
    by_name = function.variants
    fallbacks = [by_name[name] for name in experiment.fallback_variants]
    if experiment.type == "static":
        weights = experiment.candidate_variants
        return SamplingPlan([(by_name[n], w) for n, w in weights.items() if w > 0], fallbacks)
    if allocation is None:
        return SamplingPlan([(by_name[n], 1.0) for n in experiment.candidate_variants], fallbacks, True)
    weights = allocation.weights
    candidates = [(by_name[n], w) for n in experiment.candidate_variants if (w := weights.get(n, 0.0)) > 0]
    return SamplingPlan(candidates, fallbacks, True)


# -- the in-memory cache every replica reads -------------------------------------------------------------------


class Allocations:
    """The stored allocations of this process, by function name: replaced whole by the `experiments` job each
    period. A process that cannot read them keeps the last ones it read (or none: uniform exploration)."""

    def __init__(self) -> None:
        self._by_function: dict[str, Allocation] = {}

    def get(self, function_name: str) -> Allocation | None:
        return self._by_function.get(function_name)

    def replace_all(self, allocations: Sequence[Allocation], experiments: Mapping[str, ExperimentationConfig]) -> None:
        """Keep the allocations computed for the config's adaptive `experiments` as they are now (the fingerprint
        is checked here, once per read, so that routing need not check it per request)."""
        self._by_function = {
            a.function_name: a
            for a in allocations
            if (e := experiments.get(a.function_name)) is not None and a.fingerprint == fingerprint(e)
        }

    def __len__(self) -> int:
        return len(self._by_function)


# -- what `GET /v1/functions/{F}/experiment` and `lsd experiments show` tell --------------------------------------


@dataclass(frozen=True, slots=True)
class ExperimentReport:
    """A function's experiment as this process samples it. `source`: "variant_weights" (no experimentation table:
    the variants' `weight`), "config" (static), "stored" (an adaptive allocation read from PostgreSQL) or
    "default" (adaptive, nothing stored yet for this config: uniform exploration)."""

    function_name: str
    type: Literal["static", "adaptive"]
    source: Literal["variant_weights", "config", "stored", "default"]
    candidates: tuple[str, ...]
    fallbacks: tuple[str, ...]
    weights: Mapping[str, float]  # sampling probabilities, summing to 1 over the candidates
    phase: Phase
    experiment: ExperimentationConfig | None
    metric: MetricConfig | None = None
    evidence: Mapping[str, ArmEvidence] = field(default_factory=dict)
    winner: str | None = None
    stopped_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def stopped(self) -> bool:
        return self.phase == "stopped"


def report(
    function: FunctionConfig, metrics: Mapping[str, MetricConfig], allocation: Allocation | None
) -> ExperimentReport:
    experiment = function.experimentation
    if allocation is not None and (experiment is None or allocation.fingerprint != fingerprint(experiment)):
        allocation = None  # computed for another version of the experiment: not what routing uses
    plan = sampling_plan(function, None, allocation)
    total = sum(w for _, w in plan.candidates) or 1.0
    weights = {v.name: w / total for v, w in plan.candidates}
    if experiment is None:
        fallbacks = tuple(v.name for v in plan.fallbacks)
        weights = {name: weights.get(name, 0.0) for name in function.variants if name not in fallbacks}
        return ExperimentReport(
            function.name, "static", "variant_weights", tuple(weights), fallbacks, weights, "static", None
        )
    candidates = tuple(experiment.candidate_variants)
    weights = {name: weights.get(name, 0.0) for name in candidates}
    fallbacks = tuple(experiment.fallback_variants)
    if experiment.type == "static":
        return ExperimentReport(function.name, "static", "config", candidates, fallbacks, weights, "static", experiment)
    metric = metrics.get(experiment.metric or "")
    if allocation is None:
        return ExperimentReport(
            function.name, "adaptive", "default", candidates, fallbacks, weights, "explore", experiment, metric
        )
    return ExperimentReport(
        function.name,
        "adaptive",
        "stored",
        candidates,
        fallbacks,
        weights,
        allocation.phase,
        experiment,
        metric,
        evidence=allocation.evidence,
        winner=allocation.winner,
        stopped_at=allocation.stopped_at,
        updated_at=allocation.updated_at,
    )
