"""`[gateway.batch]` and the batch price options of the providers."""

from __future__ import annotations

from pathlib import Path

import pytest

from lsd.config import parse
from lsd.errors import ConfigError
from lsd.inference.models import ModelTable
from lsd.providers.http import HttpProvider
from lsd.types import Usage


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        ModelTable.from_config(parse(text, base_dir=Path(".")))
    return info.value.errors


def test_poll_interval() -> None:
    assert parse("", base_dir=Path(".")).gateway.batch.poll_interval_s == 30
    assert parse("[gateway.batch]\npoll_interval_s = 2.5\n", base_dir=Path(".")).gateway.batch.poll_interval_s == 2.5
    assert any("gateway.batch.poll_interval_s" in e for e in errors_of("[gateway.batch]\npoll_interval_s = 0\n"))
    assert any(
        "gateway.batch.poll_intervall_s: unknown key" in e for e in errors_of("[gateway.batch]\npoll_intervall_s = 1\n")
    )


def provider(options: str) -> HttpProvider:
    text = f'[models.m]\nrouting = ["p"]\n[models.m.providers.p]\ntype = "openai"\nmodel_name = "x"\n{options}'
    built = ModelTable.from_config(parse(text, base_dir=Path("."))).get("m").providers[0]
    assert isinstance(built, HttpProvider)
    return built


def test_batch_price_defaults_to_half_of_cost_and_can_be_set() -> None:
    usage = Usage(1_000_000, 1_000_000)
    assert provider("").batch_cost(usage) is None
    assert provider("cost = { input_per_million = 2.0, output_per_million = 4.0 }").batch_cost(usage) == 3.0
    explicit = "batch_cost = { input_per_million = 0.1, output_per_million = 0.2 }"
    assert provider(explicit).batch_cost(usage) == pytest.approx(0.3)
    errors = errors_of(
        '[models.m]\nrouting = ["p"]\n[models.m.providers.p]\ntype = "anthropic"\nmodel_name = "x"\n'
        "batch_cost = { input_per_million = 1.0 }\n"
    )
    assert any("batch_cost.output_per_million: missing required key" in e for e in errors)
