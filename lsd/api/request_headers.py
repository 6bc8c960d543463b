"""LSD's request extensions given as HTTP headers, for clients whose SDK sends no extra body keys (the Vercel AI
SDK's own providers validate their options and drop unknown ones): `lsd-episode-id`, `lsd-variant-name`,
`lsd-cache` (`on`, `off`, `read_only`, `write_only`; with `lsd-cache-max-age-s`) and `lsd-dryrun: true`. What the
body sets wins; a header value that does not parse is a 400 naming the header."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from lsd.errors import InvalidRequest
from lsd.inference.request import InferenceRequest, parse_cache_options, parse_episode_id

OPTION_HEADERS = frozenset(
    {b"lsd-episode-id", b"lsd-variant-name", b"lsd-cache", b"lsd-cache-max-age-s", b"lsd-dryrun"}
)


def with_header_options(parsed: InferenceRequest, options: Mapping[bytes, str]) -> InferenceRequest:
    """`parsed` with the extensions its headers give (`options`: OPTION_HEADERS by name) where its body gave none."""
    changes: dict[str, object] = {}
    dryrun = parsed.dryrun
    flag = options.get(b"lsd-dryrun")
    if flag is not None:
        if flag not in ("true", "false"):
            raise InvalidRequest.at("lsd-dryrun", "expected true or false")
        dryrun = dryrun or flag == "true"
        changes["dryrun"] = dryrun
    episode = options.get(b"lsd-episode-id")
    if episode is not None and parsed.episode_id is None:
        changes["episode_id"] = parse_episode_id(episode, "lsd-episode-id")  # the body's own checks
    variant = options.get(b"lsd-variant-name")
    if variant is not None and parsed.variant_name is None and parsed.function_name is not None:
        changes["variant_name"] = variant
    enabled = options.get(b"lsd-cache")
    if enabled is not None and parsed.cache.enabled == "off" and parsed.cache.max_age_s is None:
        age = options.get(b"lsd-cache-max-age-s")
        try:
            max_age = int(age) if age is not None else None
        except ValueError:
            raise InvalidRequest.at("lsd-cache-max-age-s", "expected an integer") from None
        try:
            changes["cache"] = parse_cache_options({"enabled": enabled, "max_age_s": max_age}, "lsd-cache", dryrun)
        except InvalidRequest as exc:  # named for the header, not a body path
            field = "lsd-cache-max-age-s" if exc.field and exc.field.endswith("max_age_s") else "lsd-cache"
            raise InvalidRequest.at(field, exc.message.split(": ", 1)[-1]) from None
    return dataclasses.replace(parsed, **changes) if changes else parsed  # type: ignore[arg-type]
