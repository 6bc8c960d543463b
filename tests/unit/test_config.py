"""Config loading: typed objects, every error with its key path, unknown keys refused with a suggestion."""

from __future__ import annotations

from pathlib import Path

import pytest

from lsd.config import load, parse
from lsd.errors import ConfigError
from lsd.inference.models import ModelTable

ROOT = Path(__file__).resolve().parents[2]


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config = parse(text, base_dir=Path("."))
        ModelTable.from_config(config)
    return info.value.errors


def test_shipped_demo_config_loads() -> None:
    config = load(ROOT / "config" / "lsd.toml")
    assert config.gateway.bind_address == "127.0.0.1:3000"
    assert config.functions["chat"].variants["dummy_echo"].model == "echo"
    assert len(config.source_hash) == 64
    assert ModelTable.from_config(config).get("echo").providers[0].type_name == "dummy"


def test_defaults() -> None:
    config = parse("", base_dir=Path("."))
    obs = config.gateway.observability
    assert (obs.enabled, obs.async_writes) == (True, True)
    assert (obs.batch_writes.flush_interval_ms, obs.batch_writes.max_rows) == (100, 1000)
    assert config.gateway.database.connect_timeout_s == 30
    assert config.gateway.max_body_bytes == 10 * 1024 * 1024


def test_unknown_key_names_full_path_and_suggests() -> None:
    errors = errors_of(
        """
[gateway.observability.batch_writes]
flush_intervall_ms = 5
"""
    )
    assert errors == [
        "gateway.observability.batch_writes.flush_intervall_ms: unknown key (did you mean 'flush_interval_ms'?)"
    ]


def test_every_error_is_reported_at_once() -> None:
    errors = errors_of(
        """
[gateway]
bind_address = 3000
[models.m]
routing = ["a"]
[models.m.providers.b]
type = "dummy"
[functions.f]
type = "chat"
[functions.f.variants.v]
type = "chat_completion"
model = "nope"
temperature = "hot"
"""
    )
    assert "gateway.bind_address: expected a string, got int" in errors
    assert "models.m.routing: names provider 'a', which is not in models.m.providers" in errors
    assert any(e.startswith("functions.f.variants.v.model: unknown model 'nope'") for e in errors)
    assert "functions.f.variants.v.temperature: expected a number, got str" in errors


def test_provider_options_are_checked_by_the_provider() -> None:
    errors = errors_of(
        """
[models.m]
routing = ["p"]
[models.m.providers.p]
type = "dummy"
model_nme = "echo"
"""
    )
    assert errors == ["models.m.providers.p.model_nme: unknown key (did you mean 'model_name'?)"]


def test_unknown_provider_type() -> None:
    errors = errors_of('[models.m]\nrouting = ["p"]\n[models.m.providers.p]\ntype = "nope"\n')
    assert errors[0].startswith("models.m.providers.p.type: unknown provider type 'nope'")


def test_toml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[gateway]\nbind_address = "x:1"\nthis is not toml\n')
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.errors[0].startswith(f"{path}:3:")


def test_json_function_variants_need_json_mode() -> None:
    errors = errors_of(
        '[functions.f]\ntype = "json"\n[functions.f.variants.v]\ntype = "chat_completion"\nmodel = "dummy::json"\n'
    )
    assert errors == ["functions.f.variants.v.json_mode: required for variants of json functions"]


def test_output_schema_path_is_relative_to_config_file(tmp_path: Path) -> None:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "out.json").write_text('{"type": "object"}')
    path = tmp_path / "lsd.toml"
    path.write_text(
        '[functions.f]\ntype = "json"\noutput_schema = "schemas/out.json"\n'
        '[functions.f.variants.v]\ntype = "chat_completion"\nmodel = "dummy::json"\njson_mode = "strict"\n'
    )
    assert load(path).functions["f"].output_schema == {"type": "object"}


def test_shorthand_model_in_variant_is_built() -> None:
    config = parse(
        '[functions.f]\ntype = "chat"\n[functions.f.variants.v]\ntype = "chat_completion"\nmodel = "dummy::echo"\n',
        base_dir=Path("."),
    )
    assert ModelTable.from_config(config).get("dummy::echo").providers[0].model_name == "echo"


def test_env_values_are_resolved_at_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LSD_TEST_BIND", "0.0.0.0:4000")
    config = parse('[gateway]\nbind_address = "env::LSD_TEST_BIND"\n', base_dir=Path("."))
    assert config.gateway.bind_address == "0.0.0.0:4000"
    monkeypatch.delenv("LSD_TEST_BIND")
    assert errors_of('[gateway]\nbind_address = "env::LSD_TEST_BIND"\n') == [
        "gateway.bind_address: environment variable LSD_TEST_BIND is not set"
    ]
