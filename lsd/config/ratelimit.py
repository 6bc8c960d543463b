"""`[rate_limiting]` and `[[rate_limiting.rules]]`, with TensorZero's semantics; errors name the rule index."""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from lsd.config.reader import Table

Resource = Literal["model_inferences", "tokens", "cost"]
RESOURCES: tuple[Resource, ...] = ("model_inferences", "tokens", "cost")
UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400, "month": 30 * 86400}
LIMIT_KEYS = tuple(f"{r}_per_{u}" for r in RESOURCES for u in UNITS)
EACH = "lsd::each"
TOTAL = "lsd::total"
# TensorZero's spellings are accepted and read as LSD's.
_ALIASES = {"tensorzero::each": EACH, "tensorzero::total": TOTAL}
PUBLIC_ID = re.compile(r"^[a-z0-9]{12}$")


@dataclass(frozen=True, slots=True)
class Limit:
    """One token bucket of a rule: `capacity` units, refilled at `refill_per_s` (both in the resource's unit)."""

    name: str  # the TOML key, e.g. "tokens_per_minute"
    resource: Resource
    capacity: float
    refill_per_s: float
    bucket_key: str  # rate_limit_buckets.rule_key: rule index, rule hash, limit name


@dataclass(frozen=True, slots=True)
class TagScope:
    tag_key: str
    tag_value: str  # a literal, EACH (one bucket per value) or TOTAL (one bucket for every request with the tag)


@dataclass(frozen=True, slots=True)
class KeyScope:
    public_id: str  # a literal public id or EACH


Scope = TagScope | KeyScope


@dataclass(frozen=True, slots=True)
class RuleConfig:
    index: int
    limits: tuple[Limit, ...]
    scope: tuple[Scope, ...]
    priority: int | None
    always: bool

    @property
    def name(self) -> str:
        return f"rate_limiting.rules[{self.index}]"


@dataclass(frozen=True, slots=True)
class RateLimitingConfig:
    enabled: bool = True
    rules: tuple[RuleConfig, ...] = ()
    default_cost: float = 1.0  # the cost reserved before a call, corrected by the real cost afterwards
    lease: float = 0.0  # share of a bucket's capacity a replica may take at once and spend locally; 0 is exact
    lease_ttl_ms: int = 1000  # unspent leased capacity goes back to the shared bucket after this long
    fail_open: bool = True  # PostgreSQL unreachable: admit without limits (true) or answer 503 (false)
    # output tokens a tokens_* limit reserves for a request that sets no max_tokens (nor its variants); None: a 400
    default_max_tokens: int | None = None


def rate_limiting_from(t: Table, *, auth_enabled: bool) -> RateLimitingConfig:
    enabled = t.bool("enabled", True)
    default_cost = t.float("default_cost", 1.0, minimum=0)
    lease = t.float("lease", 0.0, minimum=0)
    if lease > 0.5:
        t.error("lease", f"must be <= 0.5 (a share of each bucket's capacity), got {lease}")
        lease = 0.0
    lease_ttl_ms = t.int("lease_ttl_ms", 1000, minimum=1)
    fail_open = t.bool("fail_open", True)
    default_max_tokens = t.int("default_max_tokens", None, minimum=1)
    raw_rules = t.raw("rules", [])
    rules: list[RuleConfig] = []
    if not isinstance(raw_rules, list):
        t.error("rules", "expected an array of tables ([[rate_limiting.rules]])")
        raw_rules = []
    for index, raw in enumerate(raw_rules):
        path = f"{t.key_path('rules')}[{index}]"
        if not isinstance(raw, dict):
            t.sink.add(path, "expected a table")
            continue
        rule = _rule(Table(raw, path, t.sink, t.base_dir), index, raw, auth_enabled)
        if rule is not None:
            rules.append(rule)
    if default_max_tokens is not None:
        for rule in rules:
            for limit in rule.limits:
                if limit.resource == "tokens" and default_max_tokens >= limit.capacity:
                    t.error(
                        "default_max_tokens",
                        f"{default_max_tokens} is not below the capacity of {rule.name}'s {limit.name} "
                        f"({limit.capacity:g}): every request without max_tokens would be refused",
                    )
    t.finish()
    return RateLimitingConfig(enabled, tuple(rules), default_cost, lease, lease_ttl_ms, fail_open, default_max_tokens)


def _rule(t: Table, index: int, raw: dict[str, Any], auth_enabled: bool) -> RuleConfig | None:
    errors_before = len(t.sink.errors)
    digest = hashlib.sha256(orjson.dumps(raw, option=orjson.OPT_SORT_KEYS)).hexdigest()[:12]
    limits = []
    for name in LIMIT_KEYS:
        if t.has(name):
            limit = _limit(t, name, f"r{index}:{digest}:{name}")
            if limit is not None:
                limits.append(limit)
    if not any(t.has(name) for name in LIMIT_KEYS):
        t.error("", "no limit: expected a key like model_inferences_per_minute, tokens_per_hour or cost_per_day")
    always = t.bool("always", False)
    priority = t.int("priority", None, minimum=0)
    if always and t.has("priority"):
        t.error("priority", "a rule has either `priority = N` or `always = true`, not both")
    elif not always and priority is None and not t.has("priority"):
        t.error("", "needs `priority = N` or `always = true`")
    scope = _scope(t, auth_enabled)
    t.finish()
    if len(t.sink.errors) > errors_before:
        return None
    return RuleConfig(index, tuple(limits), scope, None if always else priority, always)


def _limit(t: Table, name: str, bucket_key: str) -> Limit | None:
    resource, _, unit = name.partition("_per_")
    seconds = UNITS[unit]
    value = t.raw(name)
    if isinstance(value, dict):
        sub = Table(value, t.key_path(name), t.sink, t.base_dir)
        capacity = sub.float("capacity", None)
        refill = sub.float("refill_rate", None)
        for key, number in (("capacity", capacity), ("refill_rate", refill)):
            if number is None and not sub.has(key):
                sub.error(key, "missing required key")
            elif number is not None and not (number > 0 and math.isfinite(number)):
                sub.error(key, f"must be a positive number, got {number}")
        sub.finish()
        if capacity is None or refill is None or capacity <= 0 or refill <= 0:
            return None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if not (value > 0 and math.isfinite(value)):
            t.error(name, f"must be a positive number, got {value}")
            return None
        capacity = refill = float(value)
    else:
        t.error(name, "expected a positive number or { capacity, refill_rate }")
        return None
    return Limit(name, resource, capacity, refill / seconds, bucket_key)  # type: ignore[arg-type]


def _scope(t: Table, auth_enabled: bool) -> tuple[Scope, ...]:
    raw = t.raw("scope", [])
    if not isinstance(raw, list):
        t.error("scope", "expected an array of { tag_key, tag_value } or { api_key_public_id } tables")
        return ()
    out: list[Scope] = []
    literals: dict[str, str] = {}
    key_literal: str | None = None
    for i, entry in enumerate(raw):
        path = f"{t.key_path('scope')}[{i}]"
        if not isinstance(entry, dict):
            t.sink.add(path, "expected { tag_key, tag_value } or { api_key_public_id }")
            continue
        s = Table(entry, path, t.sink, t.base_dir)
        if s.has("api_key_public_id"):
            value = s.str("api_key_public_id", required=True, env=False)
            value = _ALIASES.get(value, value) if isinstance(value, str) else None
            if not auth_enabled:
                s.error("api_key_public_id", "can never match: gateway.auth.enabled is false")
            elif isinstance(value, str) and value != EACH and not PUBLIC_ID.match(value):
                s.error("api_key_public_id", f"can never match: {value!r} is not a 12-character public id")
            elif isinstance(value, str) and value != EACH:
                if key_literal is not None and key_literal != value:
                    s.error("api_key_public_id", f"can never match: another scope entry requires {key_literal!r}")
                key_literal = value
            if isinstance(value, str):
                out.append(KeyScope(value))
        else:
            tag_key = s.str("tag_key", required=True, env=False)
            tag_value = s.str("tag_value", required=True, env=False)
            if isinstance(tag_key, str) and isinstance(tag_value, str):
                tag_value = _ALIASES.get(tag_value, tag_value)
                if tag_value not in (EACH, TOTAL):
                    if tag_key in literals and literals[tag_key] != tag_value:
                        s.error("tag_value", f"can never match: another scope entry requires {literals[tag_key]!r}")
                    literals[tag_key] = tag_value
                out.append(TagScope(tag_key, tag_value))
        s.finish()
    return tuple(out)
