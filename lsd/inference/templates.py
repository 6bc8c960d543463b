"""Function schemas and variant templates: validate the request's arguments, render messages with Jinja2.

Templates run in Jinja2's sandbox with StrictUndefined (a missing variable is an error, not an empty string).
`{% include %}` and `{% import %}` read files under `gateway.template_filesystem_access.base_path` only; every
template they name (by a literal name) is loaded at start, so a missing one is a ConfigError, never a failed request.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import jsonschema
from jinja2 import BaseLoader, Environment, FileSystemLoader, StrictUndefined, TemplateError, TemplateNotFound, meta
from jinja2.sandbox import SandboxedEnvironment

from lsd.config.model import Config, FunctionConfig, TemplateConfig, VariantConfig
from lsd.errors import ConfigError, InvalidRequest, SchemaValidation
from lsd.types import ContentBlock, Input, Message, RawText, Template, Text


class ContainedLoader(FileSystemLoader):
    """FileSystemLoader that also refuses a file whose real path (symbolic links followed) leaves the base folder:
    a link inside base_path must not hand `{% include %}` a file outside it (/etc/passwd)."""

    def __init__(self, base: str | os.PathLike[str]) -> None:
        super().__init__(base)
        self._root = os.path.realpath(base)

    def get_source(self, environment: Environment, template: str) -> tuple[str, str, Callable[[], bool]]:
        source, filename, uptodate = super().get_source(environment, template)
        if os.path.commonpath([self._root, os.path.realpath(filename)]) != self._root:
            raise TemplateNotFound(template)
        return source, filename, uptodate


class Templates:
    """Every variant's templates, compiled once at start (a syntax error is a ConfigError naming the file)."""

    def __init__(self, config: Config) -> None:
        base = config.gateway.template_filesystem_access.base_path
        loader: BaseLoader | None = ContainedLoader(base) if base is not None else None
        self._env = SandboxedEnvironment(
            undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True, loader=loader
        )
        self._compiled: dict[tuple[str, str, str], Any] = {}
        self._legacy: set[tuple[str, str, str]] = set()
        self._validators: dict[tuple[str, str], Any] = {}
        errors: list[str] = []
        for function in config.functions.values():
            for role, schema in function.schemas.items():
                try:
                    jsonschema.Draft202012Validator.check_schema(schema)
                except jsonschema.SchemaError as exc:
                    errors.append(f"functions.{function.name}.{_schema_key(role)}: invalid JSON Schema: {exc.message}")
                    continue
                self._validators[(function.name, role)] = jsonschema.Draft202012Validator(schema)
            for variant in function.variants.values():
                for name, template in variant.templates.items():
                    key = (function.name, variant.name, name)
                    where = template.key_path or f"functions.{function.name}.variants.{variant.name}"
                    try:
                        self._compiled[key] = self._env.from_string(template.source)
                        self._check_includes(template, set())
                    except TemplateNotFound as exc:
                        hint = "" if base is not None else " (set gateway.template_filesystem_access.base_path)"
                        errors.append(f"{where}: {template.path}: cannot load included template {exc.name!r}{hint}")
                    except TemplateError as exc:
                        errors.append(f"{where}: {template.path}: {exc}")
                    if template.legacy and name not in function.schemas:
                        self._legacy.add(key)
        if errors:
            raise ConfigError(errors)

    def _check_includes(self, template: TemplateConfig | str, seen: set[str]) -> None:
        """Load every template `template` includes or imports by a literal name, recursively; raises
        TemplateNotFound (or a syntax error) for the first that cannot be loaded."""
        source = template.source if isinstance(template, TemplateConfig) else template
        for name in meta.find_referenced_templates(self._env.parse(source)):
            if name is None or name in seen:
                continue  # a name computed at render time cannot be checked here
            seen.add(name)
            if self._env.loader is None:
                raise TemplateNotFound(name)
            included, _, _ = self._env.loader.get_source(self._env, name)
            self._env.get_template(name)  # compiles it: a syntax error there is a start-up error too
            self._check_includes(included, seen)

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
        if (function.name, variant.name, "system") in self._legacy:
            # TensorZero's legacy system template without a schema: it wraps the system text as `system_text`.
            if system is not None and not isinstance(system, str):
                raise InvalidRequest(
                    f"input.system: function {function.name!r} has no system_schema: send a string",
                    field="input.system",
                )
            template = self._compiled[(function.name, variant.name, "system")]
            return self._run(template, {"system_text": system}, "input.system")
        if system is None:
            if has_schema:
                self._validate(function, "system", {}, "input.system")
            # A variant's system template with no arguments is a fixed system prompt.
            template = self._compiled.get((function.name, variant.name, "system"))
            return self._run(template, {}, "input.system") if template is not None else None
        if isinstance(system, str):
            if has_schema:
                self._validate(function, "system", system, "input.system")
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
                # TensorZero validates the text against the schema as a JSON string (which most schemas refuse).
                path = _path(i, j)
                self._validate(function, role, block.text, path)
                raise InvalidRequest(
                    f"{path}: function {function.name!r} has a {role}_schema: send arguments, not text", field=path
                )
            if (function.name, variant.name, role) in self._legacy:
                # A legacy role template without a schema (`input_wrappers.ROLE`, `ROLE_template`) wraps the text.
                template = self._compiled[(function.name, variant.name, role)]
                return Text(self._run(template, {f"{role}_text": block.text}, _path(i, j)))
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
            raise SchemaValidation(where, role, [error.message], value, validator.schema)

    def _run(self, template: Any, arguments: Mapping[str, Any], path: str) -> str:
        try:
            return str(template.render(**arguments))
        except TemplateError as exc:
            raise InvalidRequest.at(path, f"template failed: {exc}") from None


def _schema_key(name: str) -> str:
    """The config key of a function's schema: `user_schema` for a role (or `schemas.user`), else `schemas.NAME`."""
    return f"{name}_schema" if name in ("system", "user", "assistant") else f"schemas.{name}"


def _path(i: int, j: int) -> str:
    """Where a content block is in the request (built only when needed: an error or a template)."""
    return f"input.messages[{i}].content[{j}]"
