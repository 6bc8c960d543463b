"""Chat Completions `messages` as the engine's Input: system and developer text, content parts (text, images,
files, LSD's templates and raw text), assistant tool calls with their reasoning and `tensorzero_extra_content`,
and tool messages (lsd.api.openai_request parses the rest of the request)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from lsd.config.inbound import PREFIXES
from lsd.errors import InvalidOpenAIRequest, InvalidRequest
from lsd.types import ContentBlock, File, Input, Message, Template, Text, Thought, ToolCall, ToolResult, Unknown


def extension(body: Mapping[str, Any], name: str) -> Any:
    """An LSD extension key, accepted with the `lsd::` or `tensorzero::` prefix."""
    for prefix in PREFIXES:
        if f"{prefix}{name}" in body:
            return body[f"{prefix}{name}"]
    return None


_extra = extension


def _text_of(content: Any, path: str, *, system: bool = False) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(_part_text(p, f"{path}[{i}]", system) for i, p in enumerate(content))
    raise InvalidRequest.at(path, "expected a string or an array of text parts")


def _part_text(part: Any, path: str, system: bool) -> str:
    if isinstance(part, dict) and part.get("type") == "text":
        _check_text_part(part, path)
        if isinstance(part.get("text"), str):
            return str(part["text"])
    if system:
        raise InvalidOpenAIRequest("System message must contain only text or template content blocks", field=path)
    raise InvalidRequest.at(path, "expected a text part")


def _check_text_part(part: Mapping[str, Any], path: str) -> None:
    """TensorZero's rules for a `text` part: `text` or `tensorzero::arguments`, exactly one of them."""
    has_text, has_arguments = part.get("text") is not None, _extra(part, "arguments") is not None
    if has_text and has_arguments:
        raise InvalidOpenAIRequest(
            "Invalid TensorZero content block: Only one of `text` or `tensorzero::arguments` can be set", field=path
        )
    if not has_text and not has_arguments:
        raise InvalidOpenAIRequest(
            'Invalid content block: Either `text` or `tensorzero::arguments` must be set when using `"type": "text"`',
            field=path,
        )


def _file_part(part: Mapping[str, Any], path: str) -> File:
    """OpenAI's `{"type": "file", "file": {"file_data", "filename"}}`: a data URL, or bare base64."""
    file = part.get("file")
    if not isinstance(file, dict):
        raise InvalidRequest.at(f"{path}.file", "expected an object")
    filename = file.get("filename") if isinstance(file.get("filename"), str) else None
    data = file.get("file_data")
    if isinstance(data, str):
        if data.startswith("data:") and ";base64," in data:
            mime, _, payload = data[5:].partition(";base64,")
            return File(mime_type=mime or None, data=payload, filename=filename)
        given = part.get("mime_type") or file.get("mime_type")
        return File(mime_type=given if isinstance(given, str) else None, data=data, filename=filename)
    url = file.get("url") or part.get("url")
    if isinstance(url, str):
        return File(mime_type=None, url=url, filename=filename)
    if file.get("file_id") is not None:
        raise InvalidOpenAIRequest("`file_id` is not supported: send the file's content in `file_data`", field=path)
    raise InvalidRequest.at(f"{path}.file", "expected file_data")


def _parts(content: Any, role: str, path: str) -> list[ContentBlock]:
    if content is None:
        return []
    if isinstance(content, str):
        return [Text(content)]
    if not isinstance(content, list):
        raise InvalidRequest.at(path, "expected a string or an array of content parts")
    blocks: list[ContentBlock] = []
    for i, part in enumerate(content):
        ppath = f"{path}[{i}]"
        if not isinstance(part, dict):
            raise InvalidRequest.at(ppath, "expected an object")
        kind = part.get("type")
        arguments = _extra(part, "arguments")
        if kind == "text":
            _check_text_part(part, ppath)
        if kind == "text" and isinstance(arguments, dict):
            blocks.append(Template(name=role, arguments=arguments))
        elif kind == "text":
            blocks.append(Text(_part_text(part, ppath, False)))
        elif kind == "file":
            blocks.append(_file_part(part, ppath))
        elif kind == "image_url":
            url = (part.get("image_url") or {}).get("url")
            if not isinstance(url, str):
                raise InvalidRequest.at(f"{ppath}.image_url.url", "expected a string")
            detail = (part.get("image_url") or {}).get("detail")
            if url.startswith("data:") and ";base64," in url:
                mime, _, data = url[5:].partition(";base64,")
                blocks.append(File(mime_type=mime, data=data, detail=detail))
            else:
                blocks.append(File(mime_type=None, url=url, detail=detail))
        elif kind in ("lsd::raw_text", "tensorzero::raw_text"):
            blocks.append(Text(str(part.get("value", ""))))
        elif kind in ("lsd::template", "tensorzero::template"):
            blocks.append(Template(name=str(part.get("name", role)), arguments=part.get("arguments") or {}))
        else:
            raise InvalidOpenAIRequest(
                f"Invalid content block: unknown variant `{kind}`, expected one of `text`, `image_url`, `file`",
                field=f"{ppath}.type",
            )
    return blocks


def _with_extra_content(blocks: list[ContentBlock], message: Mapping[str, Any], path: str) -> list[ContentBlock]:
    """An assistant message's `tensorzero_extra_content` (thought and unknown blocks), each at its insert_index
    (at the end without one)."""
    extra = message.get("tensorzero_extra_content")
    if extra is None:
        return blocks
    if not isinstance(extra, list):
        raise InvalidRequest.at(f"{path}.tensorzero_extra_content", "expected an array")
    out = list(blocks)
    for k, item in enumerate(extra):
        epath = f"{path}.tensorzero_extra_content[{k}]"
        if not isinstance(item, dict):
            raise InvalidRequest.at(epath, "expected an object")
        block: ContentBlock
        if item.get("type") == "thought":
            summary = item.get("summary")
            provider_type = item.get("provider_type")
            block = Thought(
                item.get("text"),
                item.get("signature"),
                tuple(summary) if summary else None,
                provider_type=provider_type if isinstance(provider_type, str) else None,
            )
        elif item.get("type") == "unknown":
            block = Unknown(item.get("data"), item.get("model_name"), item.get("provider_name"))
        else:
            raise InvalidRequest.at(f"{epath}.type", "must be thought or unknown")
        index = item.get("insert_index")
        out.insert(index if isinstance(index, int) and 0 <= index <= len(out) else len(out), block)
    return out


def parse_messages(messages: Any) -> Input:
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest.at("messages", "expected a non-empty array")
    system: str | dict[str, Any] | None = None
    out: list[Message] = []
    tool_names: dict[str, str] = {}
    tool_turn = -1  # the index in `out` of the user message the latest tool messages made
    for i, m in enumerate(messages):
        path = f"messages[{i}]"
        if not isinstance(m, dict):
            raise InvalidRequest.at(path, "expected an object")
        role = m.get("role")
        content = m.get("content")
        if role in ("system", "developer"):
            single = content[0] if isinstance(content, list) and len(content) == 1 else None
            if isinstance(single, dict) and isinstance(_extra(single, "arguments"), dict):
                system = _extra(single, "arguments")
            elif isinstance(content, dict):
                system = content
            else:
                text = _text_of(content, f"{path}.content", system=True)
                system = text if system is None or not isinstance(system, str) else f"{system}\n{text}"
        elif role == "user":
            out.append(Message("user", tuple(_parts(content, "user", f"{path}.content"))))
        elif role == "assistant":
            blocks = _parts(content, "assistant", f"{path}.content")
            for j, call in enumerate(m.get("tool_calls") or []):
                cpath = f"{path}.tool_calls[{j}]"
                function = call.get("function") if isinstance(call, dict) else None
                if not isinstance(function, dict) or not isinstance(call.get("id"), str):
                    raise InvalidRequest.at(cpath, "expected {id, type: function, function: {name, arguments}}")
                name, arguments = str(function.get("name", "")), function.get("arguments", "")
                tool_names[call["id"]] = name
                blocks.append(
                    ToolCall(
                        call["id"], name, arguments if isinstance(arguments, str) else orjson.dumps(arguments).decode()
                    )
                )
            blocks = _with_extra_content(blocks, m, path)
            reasoning = m.get("reasoning_content")
            if reasoning is not None and not isinstance(reasoning, str):
                raise InvalidRequest.at(f"{path}.reasoning_content", "expected a string")
            if reasoning and not any(isinstance(b, Thought) for b in blocks):  # not twice: LSD answers both fields
                blocks.insert(0, Thought(reasoning))  # DeepSeek's, vLLM's reasoning, as clients send it back
            out.append(Message("assistant", tuple(blocks)))
        elif role == "tool":
            call_id = m.get("tool_call_id")
            if not isinstance(call_id, str):
                raise InvalidRequest.at(f"{path}.tool_call_id", "required for tool messages")
            result = _tool_result(call_id, tool_names.get(call_id, ""), content, f"{path}.content")
            if out and tool_turn == len(out) - 1:  # the tool messages of one turn: one user message
                out[-1] = Message("user", (*out[-1].content, *result))
            else:
                out.append(Message("user", result))
                tool_turn = len(out) - 1
        else:
            raise InvalidRequest.at(f"{path}.role", f"must be system, developer, user, assistant or tool, got {role!r}")
    return Input(system=system, messages=tuple(out))


def _tool_result(call_id: str, name: str, content: Any, path: str) -> tuple[ContentBlock, ...]:
    """A tool message: its text as the ToolResult; images and files among its parts follow it as their own blocks
    (Qwen Code's read_file answers an image so), as on the Anthropic route. An OpenAI-style provider gets them in a
    user message after the tool messages, Anthropic in the tool results' user turn."""
    if not isinstance(content, list) or all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        return (ToolResult(call_id, name, _text_of(content, path)),)
    texts: list[str] = []
    files: list[ContentBlock] = []
    for i, part in enumerate(content):
        if isinstance(part, dict) and part.get("type") == "text":
            texts.append(_part_text(part, f"{path}[{i}]", False))
        elif isinstance(part, dict) and part.get("type") in ("image_url", "file"):
            files.extend(_parts([part], "user", f"{path}[{i}]"))
        else:
            raise InvalidRequest.at(f"{path}[{i}]", "expected a text, image_url or file part")
    return (ToolResult(call_id, name, "".join(texts)), *files)
