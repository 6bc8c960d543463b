"""LSD's request extensions given as HTTP headers, for clients whose SDK sends no extra body keys (the Vercel AI
SDK's own providers validate their options and drop unknown ones): `lsd-episode-id`, `lsd-variant-name`,
`lsd-cache` (`on`, `off`, `read_only`, `write_only`; with `lsd-cache-max-age-s`) and `lsd-dryrun: true`.

A header fills what the body left unset: an episode or variant the body names, and cache options the body sets
(other than `off` with no max age, which is also what a body that says nothing has), win. `lsd-dryrun: true` makes
the request a dry run whatever the body says (the safe direction): it then never writes the cache, from whichever
side the cache options came. A value that does not parse is a 400 naming the header."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from lsd.errors import InvalidRequest
from lsd.inference.request import CacheOptions, InferenceRequest, parse_cache_options, parse_episode_id

OPTION_HEADERS = frozenset(
    {b"lsd-episode-id", b"lsd-variant-name", b"lsd-cache", b"lsd-cache-max-age-s", b"lsd-dryrun"}
)
_CACHE_MODES = ("on", "off", "read_only", "write_only")


def with_header_options(parsed: InferenceRequest, options: Mapping[bytes, str]) -> InferenceRequest:
    """`parsed` with the extensions its headers give (`options`: OPTION_HEADERS by name)."""
    changes: dict[str, object] = {}
    dryrun = parsed.dryrun
    flag = options.get(b"lsd-dryrun")
    if flag is not None:
        if flag not in ("true", "false"):
            raise InvalidRequest.at("lsd-dryrun", "expected true or false")
        if flag == "true" and not dryrun:
            dryrun = changes["dryrun"] = True
    episode = options.get(b"lsd-episode-id")
    if episode is not None and parsed.episode_id is None:
        changes["episode_id"] = parse_episode_id(episode, "lsd-episode-id")  # the body's own checks
    variant = options.get(b"lsd-variant-name")
    if variant is not None and parsed.variant_name is None and parsed.function_name is not None:
        changes["variant_name"] = variant
    cache = _header_cache(options) or parsed.cache
    if parsed.cache != CacheOptions():  # the body's own
        cache = parsed.cache
    if dryrun:  # a dry run never writes: on reads only, write_only does nothing (as parse_cache_options says)
        cache = CacheOptions(
            {"on": "read_only", "write_only": "off"}.get(cache.enabled, cache.enabled), cache.max_age_s
        )
    if cache != parsed.cache:
        changes["cache"] = cache
    return dataclasses.replace(parsed, **changes) if changes else parsed  # type: ignore[arg-type]


def _header_cache(options: Mapping[bytes, str]) -> CacheOptions | None:
    enabled, age = options.get(b"lsd-cache"), options.get(b"lsd-cache-max-age-s")
    max_age = None
    if age is not None:
        if not age.isdigit():
            raise InvalidRequest.at("lsd-cache-max-age-s", "expected a whole number of seconds")
        max_age = int(age)
    if enabled is None:
        if age is not None:
            raise InvalidRequest.at("lsd-cache-max-age-s", "needs lsd-cache")
        return None
    if enabled not in _CACHE_MODES:
        raise InvalidRequest.at("lsd-cache", f"must be {', '.join(_CACHE_MODES)}, got {enabled!r}")
    return parse_cache_options({"enabled": enabled, "max_age_s": max_age}, "lsd-cache", dryrun=False)
