"""Config of the variant types beyond chat_completion: TensorZero's keys and names, and errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from lsd.config import load
from lsd.config.model import Config
from lsd.errors import ConfigError

MODELS = """
[models.echo]
routing = ["dummy"]
[models.echo.providers.dummy]
type = "dummy"

[embedding_models.embedder]
routing = ["openai"]
[embedding_models.embedder.providers.openai]
type = "openai"
model_name = "text-embedding-3-small"
api_key_location = "none"

[functions.f]
type = "chat"
[functions.f.variants.a]
type = "chat_completion"
model = "echo"
"""


def loaded(tmp_path: Path, toml: str) -> Config:
    path = tmp_path / "lsd.toml"
    path.write_text(MODELS + toml)
    return load(path)


def errors(tmp_path: Path, toml: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        loaded(tmp_path, toml)
    return caught.value.errors


def test_best_of_n_keeps_its_candidates_and_its_evaluators_keys(tmp_path: Path) -> None:
    config = loaded(
        tmp_path,
        """
[functions.f.variants.best]
type = "experimental_best_of_n_sampling"
candidates = ["a", "a"]
timeout_s = 7.5
weight = 1.0
[functions.f.variants.best.evaluator]
model = "echo"
temperature = 0.2
retries = { num_retries = 2, max_delay_s = 1 }
""",
    )
    best = config.functions["f"].variants["best"]
    assert best.type == "best_of_n_sampling"
    assert best.candidates is not None
    assert best.candidates.candidates == ("a", "a")
    assert best.candidates.timeout_s == 7.5
    assert best.weight == 1.0
    assert best.model == "echo"
    assert best.params.temperature == 0.2
    assert best.params.json_mode == "strict"  # the evaluator answers JSON unless told otherwise
    assert best.retries.num_retries == 2


def test_the_variants_own_timeouts_bound_its_candidates(tmp_path: Path) -> None:
    config = loaded(
        tmp_path,
        """
[functions.f.variants.mix]
type = "mixture_of_n"
candidates = ["a"]
timeouts = { non_streaming = { total_ms = 2500 } }
[functions.f.variants.mix.fuser]
model = "echo"
""",
    )
    mix = config.functions["f"].variants["mix"]
    assert mix.type == "mixture_of_n"
    assert mix.candidates is not None and mix.candidates.timeout_s == 2.5


def test_dicl_reads_its_retrieval_keys_and_instructions_file(tmp_path: Path) -> None:
    (tmp_path / "instructions.txt").write_text("Imitate the examples.")
    config = loaded(
        tmp_path,
        """
[functions.f.variants.d]
type = "experimental_dynamic_in_context_learning"
embedding_model = "embedder"
model = "echo"
k = 5
max_distance = 0.4
system_instructions = "instructions.txt"
max_tokens = 100
""",
    )
    d = config.functions["f"].variants["d"]
    assert d.type == "dicl"
    assert d.dicl is not None
    assert (d.dicl.embedding_model, d.dicl.k, d.dicl.max_distance) == ("embedder", 5, 0.4)
    assert d.dicl.system_instructions == "Imitate the examples."
    assert d.params.max_tokens == 100


def test_chain_of_thought_is_a_json_functions_variant(tmp_path: Path) -> None:
    config = loaded(
        tmp_path,
        """
[functions.j]
type = "json"
[functions.j.variants.c]
type = "experimental_chain_of_thought"
model = "echo"
json_mode = "strict"
""",
    )
    assert config.functions["j"].variants["c"].type == "chain_of_thought"


@pytest.mark.parametrize(
    ("toml", "error"),
    [
        (
            '[functions.f.variants.best]\ntype = "best_of_n_sampling"\ncandidates = ["a", "nope"]\n'
            '[functions.f.variants.best.evaluator]\nmodel = "echo"\n',
            "functions.f.variants.best.candidates: names variant 'nope', which is not a variant of this function",
        ),
        (
            '[functions.f.variants.best]\ntype = "best_of_n_sampling"\ncandidates = ["a"]\n'
            "[functions.f.variants.best.evaluator]\ntemperature = 0.5\n",
            "functions.f.variants.best.evaluator.model: missing required key",
        ),
        (
            '[functions.f.variants.best]\ntype = "best_of_n_sampling"\ncandidates = ["a"]\n',
            "functions.f.variants.best.evaluator: missing required key",
        ),
        (
            '[functions.f.variants.best]\ntype = "best_of_n_sampling"\ncandidates = []\n'
            '[functions.f.variants.best.evaluator]\nmodel = "echo"\n',
            "functions.f.variants.best.candidates: must name at least one variant",
        ),
        (
            '[functions.f.variants.best]\ntype = "best_of_n_sampling"\ncandidates = ["a"]\n'
            '[functions.f.variants.best.evaluator]\nmodel = "echo"\nbogus = 1\n',
            "functions.f.variants.best.evaluator.bogus: unknown key",
        ),
        (
            '[functions.f.variants.mix]\ntype = "mixture_of_n"\ncandidates = ["a"]\n'
            '[functions.f.variants.mix.fuser]\nmodel = "echo"\n'
            '[functions.f.variants.best]\ntype = "best_of_n_sampling"\ncandidates = ["mix"]\n'
            '[functions.f.variants.best.evaluator]\nmodel = "echo"\n',
            "functions.f.variants.best.candidates: names variant 'mix', a mixture_of_n variant (candidates cannot be"
            " nested)",
        ),
        (
            '[functions.f.variants.d]\ntype = "dicl"\nembedding_model = "nope"\nmodel = "echo"\nk = 3\n',
            "functions.f.variants.d.embedding_model: unknown embedding model 'nope': define [embedding_models.nope]"
            " or use a shorthand like 'openai::text-embedding-3-small'",
        ),
        (
            '[functions.f.variants.d]\ntype = "dicl"\nembedding_model = "embedder"\nmodel = "echo"\n',
            "functions.f.variants.d.k: missing required key",
        ),
        (
            '[functions.f.variants.d]\ntype = "dicl"\nembedding_model = "embedder"\nmodel = "echo"\nk = 3\n'
            'system_template = "x.j2"\n',
            "functions.f.variants.d.system_template: unknown key",
        ),
        (
            '[functions.f.variants.c]\ntype = "chain_of_thought"\nmodel = "echo"\n',
            "functions.f.variants.c.type: a chain_of_thought variant is only for json functions (its answer is a"
            " JSON object)",
        ),
        (
            '[functions.f.variants.x]\ntype = "experimental_tree_of_thought"\nmodel = "echo"\n',
            "functions.f.variants.x.type: unknown variant type 'experimental_tree_of_thought'",
        ),
    ],
)
def test_a_mistake_is_an_error_naming_its_key(tmp_path: Path, toml: str, error: str) -> None:
    found = errors(tmp_path, toml)
    assert any(e.startswith(error) for e in found), found
