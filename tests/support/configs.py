"""TOML blocks that many tests need but none is about: the dummy `echo` model, a one-variant chat function, a
dummy model that falls back, a boolean metric, an OpenAI model on a fake server, the `{"answer": ...}` schema.

A test whose subject is its config (retries, evaluators, batch providers...) writes that config out in full; these
builders are for the plumbing around it, and their arguments name what a test's assertions rely on (a variant's
name, a fallback's providers). Each returns TOML text to put into a config."""

from __future__ import annotations

import json
from pathlib import Path

ECHO_MODEL = """
[models.echo]
routing = ["dummy"]
[models.echo.providers.dummy]
type = "dummy"
model_name = "echo"
"""
"""The model `echo`: one dummy provider, `dummy`, that answers "echo: <the last user message>"."""


def chat_function(name: str = "chat", *, variant: str = "a", model: str = "echo") -> str:
    """The chat function `name` with one chat_completion variant, `variant`, on `model`."""
    return f"""
[functions.{name}]
type = "chat"
[functions.{name}.variants.{variant}]
type = "chat_completion"
model = "{model}"
"""


def echo_chat(variant: str = "a") -> str:
    """The `echo` model behind the chat function `chat` (one variant, `variant`)."""
    return ECHO_MODEL + chat_function(variant=variant)


def dummy_fallback_model(name: str, *, failing: str, answering: str) -> str:
    """The model `name` routed to two dummy providers: `failing` always errs, then `answering` echoes."""
    return f"""
[models.{name}]
routing = ["{failing}", "{answering}"]
[models.{name}.providers.{failing}]
type = "dummy"
model_name = "error"
[models.{name}.providers.{answering}]
type = "dummy"
model_name = "echo"
"""


def boolean_metric(name: str) -> str:
    """A boolean metric on inferences, to be maximised."""
    return f"""
[metrics.{name}]
type = "boolean"
optimize = "max"
level = "inference"
"""


def openai_model(name: str, api_base: str, *, key_location: str) -> str:
    """The model `name`: `gpt-4o-mini` from one `openai` provider, `openai`, at `api_base` (a fake server's),
    its key read from `key_location`."""
    return f"""
[models.{name}]
routing = ["openai"]
[models.{name}.providers.openai]
type = "openai"
model_name = "gpt-4o-mini"
api_base = "{api_base}"
api_key_location = "{key_location}"
"""


ANSWER_SCHEMA = {"type": "object", "required": ["answer"]}
"""The output schema of the json functions in tests: an object with an `answer` (what `dummy::json` returns)."""


def write_answer_schema(folder: Path, name: str = "answer.json") -> Path:
    """ANSWER_SCHEMA written to `folder / name`, for a config's `output_schema`; returns the path."""
    path = folder / name
    path.write_text(json.dumps(ANSWER_SCHEMA))
    return path
