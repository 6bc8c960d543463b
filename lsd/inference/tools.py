"""Tools for one inference: the function's tools, narrowed or extended by the request (checked: result.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lsd.config.model import Config, FunctionConfig
from lsd.errors import InvalidRequest
from lsd.immutable import immutable
from lsd.types import ToolSpec


@immutable
class ToolParams:
    tools: tuple[ToolSpec, ...]
    tool_choice: str | Mapping[str, str]
    parallel_tool_calls: bool | None

    def to_json(self) -> dict[str, Any]:
        return {
            "tools_available": [
                {"name": t.name, "description": t.description, "parameters": dict(t.parameters), "strict": t.strict}
                for t in self.tools
            ],
            "tool_choice": self.tool_choice if isinstance(self.tool_choice, str) else dict(self.tool_choice),
            "parallel_tool_calls": self.parallel_tool_calls,
        }


def resolve_tools(
    config: Config,
    function: FunctionConfig,
    allowed_tools: Sequence[str] | None,
    additional_tools: Sequence[ToolSpec],
    tool_choice: str | Mapping[str, str] | None,
    parallel_tool_calls: bool | None,
) -> ToolParams | None:
    """The tools offered to the model, or None when there are none (json functions never have tools)."""
    names = list(allowed_tools) if allowed_tools is not None else list(function.tools)
    specs: list[ToolSpec] = []
    for i, name in enumerate(names):
        tool = config.tools.get(name)
        if tool is None:
            raise InvalidRequest(f"allowed_tools[{i}]: unknown tool {name!r}", field=f"allowed_tools[{i}]")
        specs.append(ToolSpec(tool.name, tool.description, tool.parameters, tool.strict))
    specs.extend(additional_tools)
    if not specs:
        return None
    if function.type != "chat":
        raise InvalidRequest("additional_tools: json functions take no tools", field="additional_tools")
    choice = tool_choice if tool_choice is not None else function.tool_choice
    if isinstance(choice, Mapping) and choice.get("specific") not in {s.name for s in specs}:
        whose = "" if tool_choice is not None else f" (function {function.name!r}'s tool_choice)"
        raise InvalidRequest(
            f"tool_choice: unknown tool {choice.get('specific')!r}{whose}: the request offers no tool of that name",
            field="tool_choice",
        )
    parallel = parallel_tool_calls if parallel_tool_calls is not None else function.parallel_tool_calls
    return ToolParams(tuple(specs), choice, parallel)
