"""Which `[[rate_limiting.rules]]` apply to a request, and which bucket of each (its scope key)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import orjson

from lsd.config.ratelimit import EACH, TOTAL, RuleConfig, TagScope


@dataclass(frozen=True, slots=True)
class LimitRequest:
    """What rate limiting needs to know about one inference."""

    tags: Mapping[str, str]
    api_key_public_id: str | None = None
    tokens: float | None = None  # the estimate reserved before the call (prompt + max_tokens); None: unknown


def scope_key(rule: RuleConfig, request: LimitRequest) -> str | None:
    """The bucket of `rule` this request falls in ("" for a rule's single bucket); None when it does not match."""
    parts: list[str] = []
    for s in rule.scope:
        if isinstance(s, TagScope):
            value = request.tags.get(s.tag_key)
            if value is None:
                return None
            if s.tag_value == EACH:
                parts.append(f"tag:{s.tag_key}={value}")
            elif s.tag_value == TOTAL:
                parts.append(f"tag:{s.tag_key}")
            elif value != s.tag_value:
                return None
        else:
            key = request.api_key_public_id
            if key is None:
                return None
            if s.public_id == EACH:
                parts.append(f"key:{key}")
            elif key != s.public_id:
                return None
    if not parts:
        return ""
    return parts[0] if len(parts) == 1 else orjson.dumps(parts).decode()


def applicable(rules: Sequence[RuleConfig], request: LimitRequest) -> list[tuple[RuleConfig, str]]:
    """Every matching `always` rule, and the matching rules of the highest priority among the others."""
    matching = [(rule, key) for rule in rules if (key := scope_key(rule, request)) is not None]
    top = max((rule.priority for rule, _ in matching if rule.priority is not None), default=None)
    return [(rule, key) for rule, key in matching if rule.always or rule.priority == top]
