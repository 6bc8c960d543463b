"""TensorZero configs load unchanged: several files merged, every TensorZero key accepted (or refused with a reason),
named schemas, input_wrappers, experimentation, includes checked at load."""

from __future__ import annotations

from pathlib import Path

import pytest

from lsd.config import load, load_many, parse
from lsd.errors import ConfigError, InvalidRequest, ProviderError
from lsd.inference.models import ModelTable
from lsd.inference.templates import Templates
from lsd.inference.tools import resolve_tools
from lsd.providers.base import KeyLocation
from lsd.types import Input, Message, Template, Text, ToolSpec
from tests.support.tensorzero_config import write_tensorzero_config

MODEL = """
[models.echo]
routing = ["dummy"]
[models.echo.providers.dummy]
type = "dummy"
"""


def errors_of(patterns: list[str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        Templates(load_many(patterns))
    return caught.value.errors


def test_a_multi_file_tensorzero_config_loads_and_keeps_what_it_says(tmp_path: Path) -> None:
    config = load_many([write_tensorzero_config(tmp_path)])
    assert len(config.paths) == 2
    assert config.gateway.unstable_error_json is True
    assert config.gateway.debug is True
    assert config.gateway.template_filesystem_access.base_path == (tmp_path / "config").resolve()
    assert config.gateway.database.pool_max_size == 10  # [postgres] connection_pool_size
    assert config.accepted["object_storage"] == {"type": "disabled"}
    assert "provider_types" in config.accepted
    facts = config.functions["facts"]
    assert facts.experimentation is not None
    assert facts.experimentation.candidate_variants == {"a": 1.0}
    assert facts.experimentation.fallback_variants == ("b",)
    assert facts.evaluators == {"exact": {"type": "exact_match"}}
    # the snapshot covers both files, each named
    for path in config.paths:
        assert f"# ---- lsd config file: {path} ----" in config.source_text
        assert path.read_text() in config.source_text


def test_templates_named_schemas_and_input_wrappers_behave_as_in_tensorzero(tmp_path: Path) -> None:
    config = load_many([write_tensorzero_config(tmp_path)])
    templates = Templates(config)
    draft, wrapped, facts = (config.functions[n] for n in ("draft", "wrapped", "facts"))
    system, _ = templates.render(draft, draft.variants["a"], Input(system={"name": "Bo"}, messages=()))
    assert system == "You are helpful. I am Bo."  # the include, read under template_filesystem_access
    _, messages = templates.render(
        wrapped, wrapped.variants["a"], Input(system=None, messages=(Message("user", (Text("hi"),)),))
    )
    assert messages[0].content == (Text("<q>hi</q>"),)
    block = Template(name="topic", arguments={"topic": "owls"})
    _, messages = templates.render(
        facts, facts.variants["a"], Input(system=None, messages=(Message("user", (block,)),))
    )
    assert messages[0].content == (Text("Tell me about owls"),)
    bad = Template(name="topic", arguments={"topic": 3})
    with pytest.raises(InvalidRequest, match=r"arguments\.topic: does not match"):
        templates.render(facts, facts.variants["a"], Input(system=None, messages=(Message("user", (bad,)),)))


def test_a_key_defined_in_two_files_names_both(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(MODEL + '[functions.f]\ntype = "chat"\n')
    (tmp_path / "b.toml").write_text('[functions.f]\ntype = "json"\n[gateway]\ndebug = true\n')
    errors = errors_of([str(tmp_path / "*.toml")])
    assert errors == [f"functions.f.type: defined in both {tmp_path / 'a.toml'} and {tmp_path / 'b.toml'}"]


def test_tables_may_be_spread_over_files_and_paths_resolve_against_their_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "user.minijinja").write_text("U: {{ user_text }}")
    (tmp_path / "a.toml").write_text(MODEL + '[functions.f]\ntype = "chat"\n')
    (tmp_path / "sub" / "b.toml").write_text(
        '[functions.f.variants.v]\ntype = "chat_completion"\nmodel = "echo"\nuser_template = "user.minijinja"\n'
    )
    config = load_many([str(tmp_path / "a.toml"), str(tmp_path / "sub" / "b.toml")])
    assert config.functions["f"].variants["v"].templates["user"].path == tmp_path / "sub" / "user.minijinja"


def test_a_glob_that_matches_nothing_is_an_error(tmp_path: Path) -> None:
    assert errors_of([str(tmp_path / "*.toml")]) == [f"{tmp_path / '*.toml'}: no config file matches this pattern"]


def test_one_file_keeps_its_text_as_the_snapshot(tmp_path: Path) -> None:
    (tmp_path / "lsd.toml").write_text(MODEL)
    assert load(tmp_path / "lsd.toml").source_text == MODEL


def _function_with(tmp_path: Path, template: str, gateway: str = "") -> str:
    (tmp_path / "system.minijinja").write_text(template)
    path = tmp_path / "lsd.toml"
    path.write_text(
        gateway
        + MODEL
        + '[functions.f]\ntype = "chat"\n[functions.f.variants.v]\ntype = "chat_completion"\nmodel = "echo"\n'
        + 'system_template = "system.minijinja"\n'
    )
    return str(path)


def test_a_missing_include_is_a_start_up_error_naming_the_key(tmp_path: Path) -> None:
    gateway = '[gateway.template_filesystem_access]\nbase_path = "."\n'
    path = _function_with(tmp_path, "{% include 'extra_templates/foo.minijinja' %}", gateway)
    [error] = errors_of([path])
    assert error.startswith("functions.f.variants.v.system_template: ")
    assert "cannot load included template 'extra_templates/foo.minijinja'" in error


def test_an_include_without_template_filesystem_access_is_a_start_up_error(tmp_path: Path) -> None:
    (tmp_path / "extra.minijinja").write_text("x")
    [error] = errors_of([_function_with(tmp_path, "{% import 'extra.minijinja' as x %}")])
    assert "set gateway.template_filesystem_access.base_path" in error


def test_an_include_cannot_leave_base_path(tmp_path: Path) -> None:
    (tmp_path / "inside").mkdir()
    gateway = '[gateway.template_filesystem_access]\nbase_path = "inside"\n'
    [error] = errors_of([_function_with(tmp_path, "{% include '../system.minijinja' %}", gateway)])
    assert "cannot load included template '../system.minijinja'" in error


def test_an_include_cannot_follow_a_link_out_of_base_path(tmp_path: Path) -> None:
    """A symbolic link inside base_path to a file outside it is refused like `../` (it read /etc/passwd)."""
    (tmp_path / "inside").mkdir()
    (tmp_path / "secret.txt").write_text("not for templates")
    (tmp_path / "inside" / "link.minijinja").symlink_to(tmp_path / "secret.txt")
    (tmp_path / "inside" / "ok.minijinja").write_text("fine")
    gateway = '[gateway.template_filesystem_access]\nbase_path = "inside"\n'
    [error] = errors_of([_function_with(tmp_path, "{% include 'link.minijinja' %}", gateway)])
    assert "cannot load included template 'link.minijinja'" in error
    assert not errors_of_or_none(_function_with(tmp_path, "{% include 'ok.minijinja' %}", gateway))


def errors_of_or_none(path: str) -> list[str]:
    try:
        Templates(load_many([path]))
    except ConfigError as exc:
        return exc.errors
    return []


@pytest.mark.parametrize(
    ("vtype", "judge", "canonical"),
    [
        ("experimental_best_of_n_sampling", "evaluator", "best_of_n_sampling"),
        ("experimental_best_of_n", "evaluator", "best_of_n_sampling"),
        ("experimental_mixture_of_n", "fuser", "mixture_of_n"),
    ],
)
def test_tensorzero_candidates_variant_types_load_by_their_experimental_names(
    tmp_path: Path, vtype: str, judge: str, canonical: str
) -> None:
    (tmp_path / "lsd.toml").write_text(
        MODEL
        + '[functions.f]\ntype = "chat"\n[functions.f.variants.ok]\ntype = "chat_completion"\nmodel = "echo"\n'
        + f'[functions.f.variants.fancy]\ntype = "{vtype}"\ncandidates = ["ok", "ok"]\n'
        + f"[functions.f.variants.fancy.{judge}]\nmodel = 'echo'\n"
    )
    fancy = load(tmp_path / "lsd.toml").functions["f"].variants["fancy"]
    assert fancy.type == canonical
    assert fancy.candidates is not None and fancy.candidates.candidates == ("ok", "ok")


@pytest.mark.parametrize(
    ("toml", "error"),
    [
        ('[gateway]\nbase_path = "/v2"', "gateway.base_path: LSD serves its routes at the root only"),
        ('[gateway.relay]\ngateway_url = "http://x"', "gateway.relay.gateway_url: LSD has no relay mode"),
        ("[postgres]\nenabled = false", "postgres.enabled: LSD stores everything in PostgreSQL"),
        ('[object_storage]\ntype = "ftp"', "object_storage.type: must be one of"),
        ("[gateway]\nunstable_error_json = 1", "gateway.unstable_error_json: expected a boolean"),
    ],
)
def test_tensorzero_keys_lsd_cannot_honour_are_refused_with_a_reason(tmp_path: Path, toml: str, error: str) -> None:
    (tmp_path / "lsd.toml").write_text(toml + "\n" + MODEL)
    [found] = errors_of([str(tmp_path / "lsd.toml")])
    assert found.startswith(error)


def test_experimentation_names_only_known_variants_and_metrics(tmp_path: Path) -> None:
    (tmp_path / "lsd.toml").write_text(
        MODEL
        + '[functions.f]\ntype = "chat"\n[functions.f.variants.a]\ntype = "chat_completion"\nmodel = "echo"\n'
        + '[functions.f.experimentation]\ntype = "adaptive"\ncandidate_variants = ["a", "zz"]\nmetric = "nope"\n'
    )
    assert errors_of([str(tmp_path / "lsd.toml")]) == [
        "functions.f.experimentation.candidate_variants: unknown variant 'zz'",
        "functions.f.experimentation.metric: unknown metric 'nope': define [metrics.nope]",
    ]


def test_a_named_schema_needs_its_template_in_every_variant(tmp_path: Path) -> None:
    (tmp_path / "s.json").write_text('{"type": "object"}')
    (tmp_path / "lsd.toml").write_text(
        MODEL
        + '[functions.f]\ntype = "chat"\nschemas.topic.path = "s.json"\n'
        + '[functions.f.variants.a]\ntype = "chat_completion"\nmodel = "echo"\n'
    )
    assert errors_of([str(tmp_path / "lsd.toml")]) == [
        "functions.f.variants.a: the function has schemas.topic, so the variant needs templates.topic.path"
    ]


def test_an_input_wrapper_and_a_schema_of_its_role_conflict(tmp_path: Path) -> None:
    (tmp_path / "s.json").write_text('{"type": "object"}')
    (tmp_path / "w.minijinja").write_text("{{ user_text }}")
    (tmp_path / "lsd.toml").write_text(
        MODEL
        + '[functions.f]\ntype = "chat"\nuser_schema = "s.json"\n'
        + '[functions.f.variants.a]\ntype = "chat_completion"\nmodel = "echo"\ninput_wrappers.user = "w.minijinja"\n'
    )
    errors = errors_of([str(tmp_path / "lsd.toml")])
    assert errors[0].startswith("functions.f.variants.a.input_wrappers.user: cannot be used with the function's")


PROVIDER_KEYS = """
[models.m]
routing = ["p"]
[models.m.providers.p]
type = "openai"
model_name = "gpt-4o-mini"
api_type = "chat_completions"
discard_unknown_chunks = true
api_key_location = { default = "dynamic::k", fallback = "env::OPENAI_API_KEY" }
extra_body = [{ pointer = "/service_tier", value = "flex" }, { pointer = "/user", delete = true }]
extra_headers = [{ name = "anthropic-beta", value = "x" }, { name = "X-Drop", delete = true }]

[functions.f]
type = "chat"
[functions.f.variants.v]
type = "chat_completion"
model = "m"
extra_body = [{ pointer = "/temperature", value = 0.1 }]
extra_headers = [{ name = "X-Variant", value = "v" }]
"""


def test_tensorzero_provider_keys_load(tmp_path: Path) -> None:
    """extra_body / extra_headers on providers and variants, discard_unknown_chunks, api_type and the
    {default, fallback} form of api_key_location, as TensorZero's configuration reference writes them."""
    (tmp_path / "lsd.toml").write_text(PROVIDER_KEYS)
    config = load(tmp_path / "lsd.toml")
    provider = config.models["m"].providers["p"]
    assert [(p.pointer, p.value, p.delete) for p in provider.extra_body] == [
        ("/service_tier", "flex", False),
        ("/user", None, True),
    ]
    assert [(h.name, h.value, h.delete) for h in provider.extra_headers] == [
        ("anthropic-beta", "x", False),
        ("X-Drop", None, True),
    ]
    variant = config.functions["f"].variants["v"]
    assert [p.pointer for p in variant.extra_body] == ["/temperature"]
    assert [h.name for h in variant.extra_headers] == ["X-Variant"]


@pytest.mark.parametrize(
    ("replace", "error"),
    [
        (('api_type = "chat_completions"', 'api_type = "responses"'), "api_type: LSD calls OpenAI through Chat"),
        (('{ pointer = "/service_tier", value = "flex" }', '{ pointer = "x", value = 1 }'), "extra_body[0].pointer:"),
        (('{ pointer = "/user", delete = true }', '{ pointer = "/user" }'), "extra_body[1]: give either a value"),
        (('{ name = "anthropic-beta", value = "x" }', '{ name = "a b", value = "x" }'), "extra_headers[0].name:"),
        (('{ name = "X-Drop", delete = true }', '{ name = "X-Drop", value = "x", bogus = 1 }'), "[1].bogus: unknown"),
        (('fallback = "env::OPENAI_API_KEY" }', 'other = "x" }'), "api_key_location: expected a string, or a table"),
    ],
)
def test_bad_provider_keys_are_named(tmp_path: Path, replace: tuple[str, str], error: str) -> None:
    """Named at load, or (the provider plugin's own keys) when the models are built at start-up."""
    (tmp_path / "lsd.toml").write_text(PROVIDER_KEYS.replace(*replace))
    with pytest.raises(ConfigError) as caught:
        ModelTable.from_config(load_many([str(tmp_path / "lsd.toml")]))
    assert error in str(caught.value), caught.value


def test_a_key_location_falls_back_when_its_default_has_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    location = KeyLocation("dynamic", "k", fallback=KeyLocation("env", "LSD_TEST_FALLBACK_KEY"))
    monkeypatch.setenv("LSD_TEST_FALLBACK_KEY", "from-env")
    assert location.resolve({"k": "from-request"}) == "from-request"
    assert location.resolve({}) == "from-env"
    monkeypatch.delenv("LSD_TEST_FALLBACK_KEY")
    with pytest.raises(ProviderError):
        location.resolve({})


def test_a_dicl_shorthand_embedding_model_must_embed(tmp_path: Path) -> None:
    """As an [embedding_models] table of a type that cannot embed is refused at start-up, so is a dicl variant's
    shorthand (`anthropic::claude-sonnet-4-5`), naming the variant's key, instead of failing at `lsd dicl add`."""
    (tmp_path / "lsd.toml").write_text(
        MODEL
        + '[functions.f]\ntype = "chat"\n[functions.f.variants.d]\ntype = "experimental_dynamic_in_context_learning"\n'
        + 'model = "echo"\nembedding_model = "anthropic::claude-sonnet-4-5"\nk = 3\n'
    )
    with pytest.raises(ConfigError) as caught:
        ModelTable.embeddings_from_config(load_many([str(tmp_path / "lsd.toml")]))
    assert "functions.f.variants.d.embedding_model: provider type 'anthropic' does not support embeddings" in str(
        caught.value
    )


def test_invented_shorthand_model_names_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each `type::name` a caller invents used to be kept for good (a way to grow the process without limit)."""
    monkeypatch.setattr("lsd.inference.models.MAX_INVENTED_MODELS", 3)
    table = ModelTable({})
    for i in range(10):
        assert table.get(f"dummy::echo-{i}").name == f"dummy::echo-{i}"
    assert len(table.names()) == 3
    with pytest.raises(InvalidRequest, match="at most 256 characters"):
        table.get("dummy::" + "x" * 300)


def test_disable_observability_is_observability_off(tmp_path: Path) -> None:
    """TensorZero's provider guides set gateway.disable_observability = true."""
    assert parse("[gateway]\ndisable_observability = true\n", base_dir=tmp_path).gateway.observability.enabled is False
    assert parse("", base_dir=tmp_path).gateway.observability.enabled is True
    with pytest.raises(ConfigError, match=r"contradicts gateway\.disable_observability"):
        parse("[gateway]\ndisable_observability = true\n[gateway.observability]\nenabled = true\n", base_dir=tmp_path)


def test_a_specific_tool_choice_may_name_a_tool_the_function_does_not_list(tmp_path: Path) -> None:
    (tmp_path / "t.json").write_text('{"type": "object"}')
    (tmp_path / "lsd.toml").write_text(
        MODEL
        + """
[tools.get_temperature]
description = "t"
parameters = "t.json"

[functions.specific_tool]
type = "chat"
tool_choice = { specific = "get_temperature" }
[functions.specific_tool.variants.a]
type = "chat_completion"
model = "echo"
"""
    )
    config = load(tmp_path / "lsd.toml")  # TensorZero loads it: the request may offer the tool
    function = config.functions["specific_tool"]
    with pytest.raises(InvalidRequest, match=r"function 'specific_tool'.s tool_choice") as caught:
        resolve_tools(config, function, None, (ToolSpec("other", "", {"type": "object"}),), None, None)
    assert caught.value.field == "tool_choice"
    offered = resolve_tools(config, function, ["get_temperature"], (), None, None)
    assert offered is not None and offered.tool_choice == {"specific": "get_temperature"}
