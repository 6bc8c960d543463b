"""A run's summary: per evaluator mean, 95% confidence interval, n, failures and cutoff; cost and wall time.

Boolean evaluators get the Wilson score interval (sound at 0% and 100%, where the normal one collapses);
float evaluators the normal approximation mean ± 1.96·s/√n with the sample standard deviation (n ≥ 2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

Z_95 = 1.959963984540054


@dataclass
class Tally:
    """What one evaluator has produced so far in a run."""

    values: list[float] = field(default_factory=list)
    failures: int = 0
    human: int = 0  # values taken from a person's earlier judgement


@dataclass(frozen=True, slots=True)
class EvaluatorSummary:
    name: str
    type: str
    output_type: str
    optimize: str
    cutoff: float | None
    n: int
    failures: int
    human: int
    mean: float | None
    ci_low: float | None
    ci_high: float | None

    @property
    def passed(self) -> bool | None:
        """None without a cutoff; else whether the mean is on the good side of it (no values: not passed)."""
        if self.cutoff is None:
            return None
        if self.mean is None:
            return False
        return self.mean >= self.cutoff if self.optimize == "max" else self.mean <= self.cutoff

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "output_type": self.output_type,
            "optimize": self.optimize,
            "mean": self.mean,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "n": self.n,
            "failures": self.failures,
            "human": self.human,
            "cutoff": self.cutoff,
            "passed": self.passed,
        }


@dataclass(frozen=True, slots=True)
class RunSummary:
    run_id: str
    evaluation_name: str
    function_name: str
    variant_name: str
    datapoints: int  # run through the engine
    inference_failures: int
    skipped: tuple[str, ...]  # dataset problems (file:line: why), not run
    evaluators: tuple[EvaluatorSummary, ...]
    cost: float | None  # evaluated inferences plus judges, where the providers report a cost
    wall_time_s: float

    @property
    def below_cutoff(self) -> list[str]:
        return [e.name for e in self.evaluators if e.passed is False]

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "evaluation_name": self.evaluation_name,
            "function_name": self.function_name,
            "variant_name": self.variant_name,
            "datapoints": self.datapoints,
            "inference_failures": self.inference_failures,
            "skipped": list(self.skipped),
            "evaluators": [e.to_json() for e in self.evaluators],
            "cost": self.cost,
            "wall_time_s": round(self.wall_time_s, 3),
            "below_cutoff": self.below_cutoff,
        }


def interval(values: Sequence[float], output_type: str) -> tuple[float | None, float | None, float | None]:
    """(mean, low, high) of the 95% confidence interval; Nones where there are too few values."""
    n = len(values)
    if n == 0:
        return None, None, None
    mean = math.fsum(values) / n
    if output_type == "boolean":
        z2 = Z_95 * Z_95
        centre = (mean + z2 / (2 * n)) / (1 + z2 / n)
        half = Z_95 * math.sqrt(mean * (1 - mean) / n + z2 / (4 * n * n)) / (1 + z2 / n)
        return mean, max(0.0, centre - half), min(1.0, centre + half)
    if n < 2:
        return mean, None, None
    variance = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    half = Z_95 * math.sqrt(variance / n)
    return mean, mean - half, mean + half
