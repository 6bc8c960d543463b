"""Function schemas and variant templates: validate the request's arguments, render messages with Jinja2.

Templates run in Jinja2's sandbox with StrictUndefined (a missing variable is an error, not an empty string).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jsonschema
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from lsd.config.model import Config, FunctionConfig, VariantConfig
from lsd.errors import ConfigError, InvalidRequest
from lsd.types import ContentBlock, Input, Message, RawText, Template, Text


class Templates:
    """Every variant's templates, compiled once at start (a syntax error is a ConfigError naming the file)."""

    def __init__(self, config: Config) -> None:
        self._env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
        self._compiled: dict[tuple[str, str, str], Any] = {}
        self._validators: dict[tuple[str, str], Any] = {}
        errors: list[str] = []
        for function in config.functions.values():
            for role, schema in function.schemas.items():
                try:
                    jsonschema.Draft202012Validator.check_schema(schema)
                except jsonschema.SchemaError as exc:
                    errors.append(f"functions.{function.name}.{role}_schema: invalid JSON Schema: {exc.message}")
                    continue
                self._validators[(function.name, role)] = jsonschema.Draft202012Validator(schema)
            for variant in function.variants.values():
                for name, template in variant.templates.items():
                    try:
                        self._compiled[(function.name, variant.name, name)] = self._env.from_string(template.source)
                    except TemplateError as exc:
                        errors.append(f"functions.{function.name}.variants.{variant.name}: {template.path}: {exc}")
        if errors:
            raise ConfigError(errors)

    def render(
        self, function: FunctionConfig, variant: VariantConfig, input: Input
    ) -> tuple[str | None, tuple[Message, ...]]:
        """The system text and messages as the provider should see them."""
        system = self._system(function, variant, input.system)
        messages = tuple(
            Message(
                role=m.role,
                content=tuple(self._block(function, variant, m.role, b, i, j) for j, b in enumerate(m.content)),
            )
            for i, m in enumerate(input.messages)
        )
        return system, messages

    def _system(
        self, function: FunctionConfig, variant: VariantConfig, system: str | Mapping[str, Any] | None
    ) -> str | None:
        has_schema = "system" in function.schemas
        if system is None:
            if has_schema:
                self._validate(function, "system", {}, "input.system")
            # A variant's system template with no arguments is a fixed system prompt.
            template = self._compiled.get((function.name, variant.name, "system"))
            return self._run(template, {}, "input.system") if template is not None else None
        if isinstance(system, str):
            if has_schema:
                raise InvalidRequest(
                    f"input.system: function {function.name!r} has a system_schema: send an object of arguments",
                    field="input.system",
                )
            return system
        if not has_schema and (function.name, variant.name, "system") not in self._compiled:
            raise InvalidRequest(
                f"input.system: function {function.name!r} has no system_schema: send a string", field="input.system"
            )
        self._validate(function, "system", system, "input.system")
        return self._run(self._compiled.get((function.name, variant.name, "system")), system, "input.system")

    def _block(
        self, function: FunctionConfig, variant: VariantConfig, role: str, block: ContentBlock, i: int, j: int
    ) -> ContentBlock:
        if isinstance(block, RawText):
            return Text(block.value)
        if isinstance(block, Text):
            if role in function.schemas:
                path = _path(i, j)
                raise InvalidRequest(
                    f"{path}: function {function.name!r} has a {role}_schema: send arguments, not text", field=path
                )
            return block
        if isinstance(block, Template):
            path = _path(i, j)
            name = block.name or role
            template = self._compiled.get((function.name, variant.name, name))
            if template is None:
                raise InvalidRequest(
                    f"{path}: variant {variant.name!r} of function {function.name!r} has no template {name!r}",
                    field=path,
                )
            if name in function.schemas:
                self._validate(function, name, block.arguments, f"{path}.arguments")
            return Text(self._run(template, block.arguments, path))
        return block

    def _validate(self, function: FunctionConfig, role: str, value: Any, path: str) -> None:
        validator = self._validators.get((function.name, role))
        if validator is None:
            return
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
        if error is not None:
            where = path + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
            raise InvalidRequest.at(where, f"does not match the {role}_schema: {error.message}")

    def _run(self, template: Any, arguments: Mapping[str, Any], path: str) -> str:
        try:
            return str(template.render(**arguments))
        except TemplateError as exc:
            raise InvalidRequest.at(path, f"template failed: {exc}") from None


def _path(i: int, j: int) -> str:
    """Where a content block is in the request (built only when needed: an error or a template)."""
    return f"input.messages[{i}].content[{j}]"
