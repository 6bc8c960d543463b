"""`[gateway.auth]`, `[rate_limiting]` and the hardening keys: defaults, and errors that name the rule index."""

from __future__ import annotations

from pathlib import Path

import pytest

from lsd.config import load, parse
from lsd.config.ratelimit import EACH, TOTAL, KeyScope, TagScope
from lsd.errors import ConfigError
from tests.support.gateway import ROOT, run_lsd


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text, base_dir=Path("."))
    return info.value.errors


def test_defaults() -> None:
    config = parse("", base_dir=Path("."))
    auth = config.gateway.auth
    assert (auth.enabled, auth.protect_metrics, auth.cache_enabled, auth.cache_ttl_ms) == (False, False, True, 1000)
    rl = config.rate_limiting
    assert (rl.enabled, rl.rules, rl.default_cost, rl.lease, rl.lease_ttl_ms) == (True, (), 1.0, 0.0, 1000)
    assert config.gateway.trusted_proxies == ()
    assert config.gateway.max_json_depth == 64


def test_a_full_rule() -> None:
    config = parse(
        """
[gateway]
trusted_proxies = ["10.0.0.0/8", "::1"]
[gateway.auth]
enabled = true
[gateway.auth.cache]
ttl_ms = 250
[rate_limiting]
lease = 0.05
[[rate_limiting.rules]]
model_inferences_per_minute = 100
tokens_per_hour = { capacity = 1000, refill_rate = 10 }
priority = 3
scope = [{ tag_key = "user", tag_value = "tensorzero::each" }, { tag_key = "app", tag_value = "lsd::total" },
         { api_key_public_id = "lsd::each" }]
""",
        base_dir=Path("."),
    )
    rule = config.rate_limiting.rules[0]
    assert rule.name == "rate_limiting.rules[0]" and rule.priority == 3 and not rule.always
    per_minute, per_hour = rule.limits
    assert (per_minute.capacity, per_minute.refill_per_s) == (100, pytest.approx(100 / 60))
    assert (per_hour.capacity, per_hour.refill_per_s) == (1000, pytest.approx(10 / 3600))
    assert rule.scope == (TagScope("user", EACH), TagScope("app", TOTAL), KeyScope(EACH))
    assert config.gateway.auth.cache_ttl_ms == 250
    assert len(config.gateway.trusted_proxies) == 2


def test_rule_errors_name_the_rule_index() -> None:
    errors = errors_of(
        """
[[rate_limiting.rules]]
model_inferences_per_minute = 1
always = true

[[rate_limiting.rules]]
model_inferences_per_minute = 1
always = true
priority = 2

[[rate_limiting.rules]]
tokens_per_minute = 5

[[rate_limiting.rules]]
always = true

[[rate_limiting.rules]]
tokens_per_fortnight = 5
cost_per_day = { capacity = 0 }
model_inferences_per_hour = "lots"
always = true
scope = [{ tag_key = "a", tag_value = "x" }, { tag_key = "a", tag_value = "y" }, { api_key_public_id = "lsd::each" }]
"""
    )
    assert "rate_limiting.rules[1].priority: a rule has either `priority = N` or `always = true`, not both" in errors
    assert "rate_limiting.rules[2]: needs `priority = N` or `always = true`" in errors
    assert any(e.startswith("rate_limiting.rules[3]: no limit") for e in errors)
    assert any(e.startswith("rate_limiting.rules[4].tokens_per_fortnight: unknown key") for e in errors)
    assert "rate_limiting.rules[4].cost_per_day.capacity: must be a positive number, got 0.0" in errors
    assert "rate_limiting.rules[4].cost_per_day.refill_rate: missing required key" in errors
    assert any(e.startswith("rate_limiting.rules[4].model_inferences_per_hour: expected") for e in errors)
    assert "rate_limiting.rules[4].scope[1].tag_value: can never match: another scope entry requires 'x'" in errors
    assert "rate_limiting.rules[4].scope[2].api_key_public_id: can never match: gateway.auth.enabled is false" in errors
    assert not any("rules[0]" in e for e in errors)


def test_key_scope_errors() -> None:
    errors = errors_of(
        """
[gateway.auth]
enabled = true
[gateway.auth.cache]
ttl = 5
[[rate_limiting.rules]]
model_inferences_per_minute = 1
always = true
scope = [{ api_key_public_id = "sk-lsd-abc" }, { tag_key = "a" }]
[rate_limiting]
lease = 0.9
"""
    )
    assert any(e.startswith("gateway.auth.cache.ttl: unknown key") for e in errors)
    assert any(e.startswith("rate_limiting.rules[0].scope[0].api_key_public_id: can never match") for e in errors)
    assert "rate_limiting.rules[0].scope[1].tag_value: missing required key" in errors
    assert any(e.startswith("rate_limiting.lease: must be <= 0.5") for e in errors)


def test_bad_trusted_proxy() -> None:
    assert errors_of('[gateway]\ntrusted_proxies = ["not-an-ip"]') == [
        "gateway.trusted_proxies[0]: not an IP address or network: 'not-an-ip'"
    ]


def test_shipped_configs_pass_config_check() -> None:
    demo = load(ROOT / "config" / "lsd.toml")
    assert not demo.gateway.auth.enabled
    production = load(ROOT / "config" / "production.toml")
    assert production.gateway.auth.enabled and production.rate_limiting.rules
    result = run_lsd("config", "check", "config/production.toml")
    assert result.returncode == 0, result.stderr
    assert "config/production.toml: ok" in result.stdout
