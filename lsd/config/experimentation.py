"""Parsing of `[functions.F.experimentation]` (TensorZero's variant sampling): checked at load, kept on the config."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lsd.config.model import ExperimentationConfig, MetricConfig
from lsd.config.reader import Table

# TensorZero still reads its older names: static_weights and uniform are static, track_and_stop is adaptive.
TYPES = {
    "static": "static",
    "static_weights": "static",
    "uniform": "static",
    "adaptive": "adaptive",
    "track_and_stop": "adaptive",
}


def experimentation_from(
    t: Table, variants: Mapping[str, Any], metrics: Mapping[str, MetricConfig], *, namespaces: bool = True
) -> ExperimentationConfig:
    kind = t.choice("type", tuple(TYPES), "static", required=True)
    kind = TYPES.get(kind, "static")
    candidates = _candidates(t, variants, required=kind == "adaptive" or t.has("candidate_variants"))
    if candidates and not any(w > 0 for w in candidates.values()):
        t.error("candidate_variants", "every weight is 0: no variant would ever be sampled")
    if kind == "adaptive" and isinstance(t.raw("candidate_variants"), dict):
        t.error("candidate_variants", "an adaptive experiment takes a list of variant names (weights are its own)")
    if kind == "adaptive" and not namespaces:
        t.error("type", "LSD runs adaptive experiments per function, not per namespace: use a static one here")
    fallbacks = t.str_list("fallback_variants", ())
    for name in fallbacks:
        if name not in variants:
            t.error("fallback_variants", f"unknown variant {name!r}")
    metric = None
    delta, epsilon, min_prob, min_samples, update_period = 0.05, 0.0, 0.0, 10, 300
    if kind == "adaptive":
        metric = t.str("metric", None, required=True)
        if isinstance(metric, str) and metric not in metrics:
            t.error("metric", f"unknown metric {metric!r}: define [metrics.{metric}]")
        delta = t.float("delta", 0.05, minimum=0)
        if not 0 < delta < 1:
            t.error("delta", f"must be between 0 and 1 (exclusive), got {delta}")
        epsilon = t.float("epsilon", 0.0, minimum=0)
        min_prob = t.float("min_prob", 0.0, minimum=0)
        if min_prob * max(len(candidates), 1) > 1:
            t.error("min_prob", "times the number of candidate_variants must not exceed 1")
        min_samples = t.int("min_samples_per_variant", 10, minimum=1)
        update_period = t.int("update_period_s", 300, minimum=1)
        if not candidates and not t.has("candidate_variants"):
            candidates = dict.fromkeys(variants, 1.0)
    elif not candidates:
        candidates = dict.fromkeys(variants, 1.0)  # no candidate_variants: every variant, uniformly
    per_namespace: dict[str, ExperimentationConfig] = {}
    if namespaces:
        for ns, nt in t.subtables("namespaces"):
            per_namespace[ns] = experimentation_from(nt, variants, metrics, namespaces=False)
    config = ExperimentationConfig(
        type=kind,  # type: ignore[arg-type]
        candidate_variants=candidates,
        fallback_variants=fallbacks,
        metric=metric,
        delta=delta,
        epsilon=epsilon,
        min_prob=min_prob,
        min_samples_per_variant=min_samples,
        update_period_s=update_period,
        namespaces=per_namespace,
    )
    t.finish()
    return config


def _candidates(t: Table, variants: Mapping[str, Any], *, required: bool) -> dict[str, float]:
    raw = t.raw("candidate_variants")
    if raw is None:
        if required:
            t.error("candidate_variants", "missing required key")
        return {}
    weights: dict[str, float] = {}
    if isinstance(raw, list) and all(isinstance(v, str) for v in raw):
        if not raw:
            t.error("candidate_variants", "an empty list names no variant: leave the key out, or name some")
        repeated = sorted({v for v in raw if raw.count(v) > 1})
        if repeated:
            t.error("candidate_variants", f"names {repeated[0]!r} more than once (a list weighs each variant once)")
        weights = dict.fromkeys(raw, 1.0)
    elif isinstance(raw, dict):
        for name, weight in raw.items():
            if isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0:
                t.error(f"candidate_variants.{name}", f"expected a weight >= 0, got {weight!r}")
                continue
            weights[name] = float(weight)
    else:
        t.error("candidate_variants", "expected a list of variant names or a table of variant = weight")
        return {}
    for name in weights:
        if name not in variants:
            t.error("candidate_variants", f"unknown variant {name!r}")
    return weights
