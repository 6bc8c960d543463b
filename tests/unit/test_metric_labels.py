"""Model names a client invents (shorthands such as `dummy::<anything>`, which are also the default function's
variant names) cannot grow /metrics without bound: past the first NAMED_SHORTHANDS, they are counted as `other`;
configured models always keep their own label."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from lsd.telemetry.metrics import NAMED_SHORTHANDS, OTHER_LABEL, Metrics

DEFAULT = "tensorzero::default"


def label_values(metrics: Metrics, family_name: str, label: str) -> set[str]:
    metrics.flush()
    text = metrics.exposition()[0].decode()
    return {
        s.labels[label]
        for family in text_string_to_metric_families(text)
        if family.name == family_name
        for s in family.samples
    }


def test_invented_model_names_past_the_bound_are_counted_as_other() -> None:
    metrics = Metrics(
        latency_buckets=(1.0,), overhead_buckets=(1.0,), ttft_buckets=(1.0,), configured_models=frozenset({"gpt"})
    )
    for i in range(NAMED_SHORTHANDS + 50):
        name = f"dummy::invented-{i}"
        metrics.observe_inference((DEFAULT, name, name, "dummy", "ok", "false"), 0.1, 0.01, None, 3, 4, None)
        metrics.observe_provider_attempt(name, "dummy", None, 0.09)
    metrics.observe_inference(("chat", "a", "gpt", "openai", "ok", "false"), 0.1, 0.01, None, 3, 4, None)
    models = label_values(metrics, "lsd_inferences", "model")
    assert len(models) == NAMED_SHORTHANDS + 2 and {OTHER_LABEL, "gpt", "dummy::invented-0"} <= models
    assert label_values(metrics, "lsd_inferences", "variant") == models - {"gpt"} | {"a"}
    assert label_values(metrics, "lsd_provider_attempts", "model") == models - {"gpt"}
    assert len(metrics._inference_children) == NAMED_SHORTHANDS + 2  # nor does the request path's own map grow
    totals = {
        s.labels["model"]: s.value
        for family in text_string_to_metric_families(metrics.exposition()[0].decode())
        if family.name == "lsd_inferences"
        for s in family.samples
        if s.name == "lsd_inferences_total"
    }
    assert totals[OTHER_LABEL] == 50 and totals["dummy::invented-0"] == 1
