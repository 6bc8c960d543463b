"""internal_dynamic_variant_config parsed into a VariantConfig, and the workflow-run episode id range."""

from __future__ import annotations

from typing import Any

import pytest

from lsd.config.model import FunctionConfig
from lsd.errors import InvalidRequest
from lsd.ids import is_workflow_episode, uuid7, validate_episode_id, workflow_episode_id
from lsd.inference.dynamic_variant import DYNAMIC_VARIANT_NAME, parse_dynamic_variant, with_dynamic_variant
from lsd.inference.request import parse_inference_request

BASE: dict[str, Any] = {"type": "chat_completion", "model": "echo"}


def test_templates_parameters_retries_and_timeouts() -> None:
    variant = parse_dynamic_variant(
        {
            **BASE,
            "weight": 0.0,
            "temperature": 0.5,
            "max_tokens": 10,
            "stop_sequences": ["x"],
            "system_template": {"__tensorzero_remapped_path": "system", "__data": "Be {{ mood }}"},
            "templates": {"greet": {"path": "Hello {{ name }}"}},
            "retries": {"num_retries": 2, "max_delay_s": 1},
            "timeouts": {"non_streaming": {"total_ms": 500}, "streaming": {"ttft_ms": 100}},
            "extra_body": None,
        }
    )
    assert variant.name == DYNAMIC_VARIANT_NAME and variant.model == "echo"
    assert variant.templates["system"].source == "Be {{ mood }}"
    assert variant.templates["greet"].source == "Hello {{ name }}"
    assert variant.params.temperature == 0.5 and variant.params.max_tokens == 10
    assert variant.params.stop_sequences == ("x",)
    assert variant.retries.num_retries == 2 and variant.timeouts.non_streaming_total_ms == 500
    assert variant.timeouts.streaming_ttft_ms == 100


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"type": "experimental_best_of_n"}, "internal_dynamic_variant_config.type"),
        ({"model": None}, "internal_dynamic_variant_config.model"),
        ({"colour": 1}, "internal_dynamic_variant_config.colour"),
        ({"top_p": True}, "internal_dynamic_variant_config.top_p"),
        ({"json_mode": "maybe"}, "internal_dynamic_variant_config.json_mode"),
        ({"user_template": 3}, "internal_dynamic_variant_config.user_template"),
        ({"templates": {"t": {}}}, "internal_dynamic_variant_config.templates.t.path"),
        ({"retries": {"num_retries": -1}}, "internal_dynamic_variant_config.retries.num_retries"),
        ({"timeouts": {"streaming": {"total": 1}}}, "internal_dynamic_variant_config.timeouts.streaming.total"),
        ({"extra_headers": [{"name": "a", "value": "b"}]}, "internal_dynamic_variant_config.extra_headers"),
    ],
)
def test_errors_name_the_key(change: dict[str, Any], path: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_dynamic_variant({**BASE, **change})
    assert info.value.field == path


def test_json_mode_must_fit_the_function() -> None:
    chat = FunctionConfig(name="c", type="chat", variants={})
    json = FunctionConfig(name="j", type="json", variants={})
    assert list(with_dynamic_variant(chat, parse_dynamic_variant(BASE)).variants) == [DYNAMIC_VARIANT_NAME]
    with pytest.raises(InvalidRequest):
        with_dynamic_variant(json, parse_dynamic_variant(BASE))
    with pytest.raises(InvalidRequest):
        with_dynamic_variant(chat, parse_dynamic_variant({**BASE, "json_mode": "strict"}))


def test_only_with_dryrun_and_never_with_variant_name() -> None:
    body = {"function_name": "f", "input": {"messages": []}, "internal_dynamic_variant_config": BASE}
    with pytest.raises(InvalidRequest, match="`dryrun` must also be set to true"):
        parse_inference_request(body)
    with pytest.raises(InvalidRequest, match="cannot both be set"):
        parse_inference_request({**body, "dryrun": True, "variant_name": "a"})
    assert parse_inference_request({**body, "dryrun": True}).dynamic_variant is not None


def test_workflow_episode_ids_are_far_ahead_and_pass_validation() -> None:
    episode = workflow_episode_id()
    assert is_workflow_episode(episode) and not is_workflow_episode(uuid7())
    validate_episode_id(episode)  # looked up where it is used, not refused as "in the future"
    with pytest.raises(ValueError, match="future"):
        validate_episode_id(uuid7((2_000_000_000) * 1000))
