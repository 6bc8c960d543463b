"""The Responses API's `input`: its items (messages, function calls and their outputs, reasoning) as the engine's
messages, each error a 400 naming its path (`input[2].content[0].type`).

`message` items by role (`system`/`developer` ones are the system text), `function_call`, `custom_tool_call` and
`reasoning` items go into the assistant's message, `function_call_output` and `custom_tool_call_output` items into
the user's; consecutive items of one role make one
message. Web search calls (a hosted tool LSD leaves out) are left out of the history.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from lsd.api.responses_tools import TOOL_SEARCH, OfferedTools, custom_arguments, parse_found, qualified
from lsd.errors import InvalidRequest
from lsd.types import ContentBlock, File, Message, Role, Text, Thought, ToolCall, ToolResult

DROPPED_ITEM_TYPES = ("web_search_call",)


def parse_items(raw: Any) -> tuple[list[Message], str | None, OfferedTools]:
    """`input` (a string, or an array of items) as messages, the text of its system/developer messages, and the
    tools its tool searches found (`tool_search_output` items' `tools`, those LSD can serve)."""
    if isinstance(raw, str):
        return [Message("user", (Text(raw),))], None, OfferedTools()
    if not isinstance(raw, list) or not raw:
        raise InvalidRequest.at("input", "expected a string or a non-empty array of input items")
    messages: list[Message] = []
    system: list[str] = []
    found = OfferedTools()
    tool_names: dict[str, str] = {}
    for i, item in enumerate(raw):
        path = f"input[{i}]"
        if not isinstance(item, dict):
            raise InvalidRequest.at(path, "expected an object")
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            role = item.get("role")
            if role in ("system", "developer"):
                system.append(_text(item.get("content"), f"{path}.content"))
                continue
            if role not in ("user", "assistant"):
                raise InvalidRequest.at(f"{path}.role", f"must be user, assistant, system or developer, got {role!r}")
            add_blocks(messages, role, _content(item.get("content"), f"{path}.content"))
        elif kind == "function_call":
            call_id, name = _string(item, "call_id", path), _string(item, "name", path)
            namespace = item.get("namespace")
            if isinstance(namespace, str) and namespace:  # as the provider was offered it (responses_tools)
                name = qualified(namespace, name)
            arguments = item.get("arguments", "")
            if not isinstance(arguments, str):
                raise InvalidRequest.at(f"{path}.arguments", "expected a JSON string")
            tool_names[call_id] = name
            add_blocks(messages, "assistant", [ToolCall(call_id, name, arguments)])
        elif kind == "custom_tool_call":  # a freeform tool's call: the function standing in for it (responses_tools)
            call_id, name = _string(item, "call_id", path), _string(item, "name", path)
            text = item.get("input", "")
            if not isinstance(text, str):
                raise InvalidRequest.at(f"{path}.input", "expected a string")
            tool_names[call_id] = name
            add_blocks(messages, "assistant", [ToolCall(call_id, name, custom_arguments(text))])
        elif kind == "tool_search_call":  # a client-run tool search: the function standing in for it
            call_id = _string(item, "call_id", path)
            arguments = item.get("arguments") or {}
            if not isinstance(arguments, dict):
                raise InvalidRequest.at(f"{path}.arguments", "expected an object")
            tool_names[call_id] = TOOL_SEARCH
            add_blocks(messages, "assistant", [ToolCall(call_id, TOOL_SEARCH, orjson.dumps(arguments).decode())])
        elif kind == "tool_search_output":  # the tools found: the call's result, and offered from now on
            call_id = _string(item, "call_id", path)
            tools = item.get("tools") or []
            if not isinstance(tools, list):
                raise InvalidRequest.at(f"{path}.tools", "expected an array of tools")
            searched = parse_found(tools)
            found = found.joined(searched)
            # The definitions themselves are offered as tools: the result names them only (not everything twice).
            add_blocks(messages, "user", [ToolResult(call_id, TOOL_SEARCH, _found_names(searched))])
        elif kind in ("function_call_output", "custom_tool_call_output"):
            call_id = _string(item, "call_id", path)
            add_blocks(messages, "user", _tool_output(item.get("output"), call_id, tool_names.get(call_id, ""), path))
        elif kind == "reasoning":
            add_blocks(messages, "assistant", [_reasoning(item, path)])
        elif kind in DROPPED_ITEM_TYPES:
            continue
        else:
            raise InvalidRequest.at(
                f"{path}.type",
                f"input item type {kind!r} is not supported: use message, function_call, function_call_output, "
                "custom_tool_call, custom_tool_call_output, tool_search_call, tool_search_output or reasoning",
            )
    return messages, "\n".join(system) or None, found


def _tool_output(output: Any, call_id: str, name: str, path: str) -> list[ContentBlock]:
    """A function_call_output's `output`: a string, or parts (text, images, files). Its text is the tool result;
    images and files follow it as blocks of their own (Codex's view_image answers with an image)."""
    if isinstance(output, str):
        return [ToolResult(call_id, name, output)]
    if not isinstance(output, list):
        raise InvalidRequest.at(f"{path}.output", "expected a string or an array of content parts")
    parts = [{**p, "type": "input_text"} if isinstance(p, dict) and p.get("type") == "text" else p for p in output]
    blocks = _content(parts, f"{path}.output")
    text = "".join(b.text for b in blocks if isinstance(b, Text))
    return [ToolResult(call_id, name, text), *(b for b in blocks if not isinstance(b, Text))]


def add_blocks(messages: list[Message], role: Role, blocks: Sequence[ContentBlock]) -> None:
    """Append `blocks` as a message of `role`, joined to the last message when it has that role."""
    if messages and messages[-1].role == role:
        messages[-1] = Message(role, (*messages[-1].content, *blocks))
    else:
        messages.append(Message(role, tuple(blocks)))


def _string(item: Mapping[str, Any], key: str, path: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidRequest.at(f"{path}.{key}", "expected a non-empty string")
    return value


def _text(content: Any, path: str) -> str:
    """Content that must be text: a string, or an array of text parts."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequest.at(path, "expected a string or an array of text parts")
    texts = []
    for i, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") not in ("input_text", "output_text", "text"):
            raise InvalidRequest.at(f"{path}[{i}]", "expected a text part")
        texts.append(str(part.get("text", "")))
    return "".join(texts)


def _content(content: Any, path: str) -> list[ContentBlock]:
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
        if kind in ("input_text", "output_text"):
            text = part.get("text")
            if not isinstance(text, str):
                raise InvalidRequest.at(f"{ppath}.text", "expected a string")
            blocks.append(Text(text))
        elif kind == "refusal":
            blocks.append(Text(str(part.get("refusal", ""))))
        elif kind == "input_image":
            blocks.append(_image(part, ppath))
        elif kind == "input_file":
            blocks.append(_file(part, ppath))
        else:
            raise InvalidRequest.at(
                f"{ppath}.type",
                f"content part type {kind!r} is not supported: use input_text, input_image, input_file or output_text",
            )
    return blocks


def _data_url(url: str, detail: Any = None, filename: Any = None) -> File:
    name = filename if isinstance(filename, str) else None
    level = detail if isinstance(detail, str) else None
    if url.startswith("data:") and ";base64," in url:
        mime, _, data = url[5:].partition(";base64,")
        return File(mime_type=mime or None, data=data, detail=level, filename=name)
    return File(mime_type=None, url=url, detail=level, filename=name)


def _image(part: Mapping[str, Any], path: str) -> File:
    url = part.get("image_url")
    if isinstance(url, str):
        return _data_url(url, part.get("detail"))
    if part.get("file_id") is not None:
        raise InvalidRequest.at(f"{path}.file_id", "file ids are not supported: send the image in `image_url`")
    raise InvalidRequest.at(f"{path}.image_url", "expected a URL or a data URL")


def _file(part: Mapping[str, Any], path: str) -> File:
    data, url, filename = part.get("file_data"), part.get("file_url"), part.get("filename")
    if isinstance(data, str):
        if data.startswith("data:"):
            return _data_url(data, filename=filename)
        return File(mime_type=None, data=data, filename=filename if isinstance(filename, str) else None)
    if isinstance(url, str):
        return _data_url(url, filename=filename)
    if part.get("file_id") is not None:
        raise InvalidRequest.at(f"{path}.file_id", "file ids are not supported: send the file in `file_data`")
    raise InvalidRequest.at(f"{path}.file_data", "expected file_data or file_url")


# A reasoning item's `encrypted_content` for a thought with text: the text sealed with its signature (none for an
# unsigned thought: DeepSeek's, vLLM's), so that a client that keeps only `encrypted_content` (the Vercel AI SDK
# and opencode with `store: false` and no summary) still sends back the whole thought, not a signature taken for
# redacted thinking, nor nothing (DeepSeek refuses a tool loop's next step without it). Opaque, as at OpenAI.
SEALED_PREFIX = "lsd1."


def seal_thought(text: str, signature: str) -> str:
    packed = orjson.dumps({"text": text, "signature": signature})
    return SEALED_PREFIX + base64.urlsafe_b64encode(packed).decode().rstrip("=")


def open_thought(value: str) -> tuple[str | None, str | None]:
    """(text, signature) of an `encrypted_content`: sealed by seal_thought (an unsigned thought's signature None),
    or a signature alone (text None)."""
    if value.startswith(SEALED_PREFIX):
        body = value[len(SEALED_PREFIX) :]
        try:
            packed = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            text, signature = packed["text"], packed["signature"]
            if isinstance(text, str) and isinstance(signature, str):
                return text, signature or None
        except (ValueError, TypeError, KeyError, orjson.JSONDecodeError):
            pass
    return None, value


def _reasoning(item: Mapping[str, Any], path: str) -> Thought:
    """A reasoning item as a thought: its text (content, else summary, else what its sealed encrypted content
    holds) and its encrypted content as signature."""
    texts = []
    for key in ("content", "summary"):
        parts = item.get(key)
        if parts is None:
            continue
        if not isinstance(parts, list):
            raise InvalidRequest.at(f"{path}.{key}", "expected an array")
        texts = [str(p.get("text", "")) for p in parts if isinstance(p, dict)]
        if texts:
            break
    encrypted = item.get("encrypted_content")
    if not isinstance(encrypted, str):
        return Thought("".join(texts) or None, None)
    sealed_text, signature = open_thought(encrypted)
    if sealed_text is None and encrypted.startswith(SEALED_PREFIX):  # not as LSD sealed it: no signature to send
        raise InvalidRequest.at(f"{path}.encrypted_content", "not an encrypted_content LSD answered")
    return Thought("".join(texts) or sealed_text, signature)


def _found_names(searched: OfferedTools) -> str:
    """A tool search's result for the model: the tools it found that are offered (one LSD cannot serve is not), by
    the names the model may now call them by."""
    names = [spec.name for spec in searched.specs]
    return "Found tools, now offered: " + ", ".join(names) if names else "No tools found."
