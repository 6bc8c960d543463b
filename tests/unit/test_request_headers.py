"""LSD's extensions as request headers (lsd.api.request_headers): what each sets, and what the body keeps."""

from __future__ import annotations

import pytest

from lsd.api.request_headers import with_header_options
from lsd.errors import InvalidRequest
from lsd.inference.request import CacheOptions, InferenceRequest
from lsd.types import Input

FUNCTION = InferenceRequest(input=Input(None, ()), function_name="f")


def test_the_variant_header_pins_a_functions_variant_unless_the_body_does() -> None:
    assert with_header_options(FUNCTION, {b"lsd-variant-name": "b"}).variant_name == "b"
    pinned = InferenceRequest(input=Input(None, ()), function_name="f", variant_name="a")
    assert with_header_options(pinned, {b"lsd-variant-name": "b"}).variant_name == "a"
    model = InferenceRequest(input=Input(None, ()), model_name="m")  # a model's request has no variants to pin
    assert with_header_options(model, {b"lsd-variant-name": "b"}).variant_name is None


def test_cache_headers_and_a_dry_run() -> None:
    cached = with_header_options(FUNCTION, {b"lsd-cache": "on", b"lsd-cache-max-age-s": "60"})
    assert cached.cache == CacheOptions("on", 60)
    dry = with_header_options(FUNCTION, {b"lsd-cache": "write_only", b"lsd-dryrun": "true"})
    assert dry.dryrun and dry.cache == CacheOptions("off")  # a dry run never writes
    body_writes = InferenceRequest(input=Input(None, ()), function_name="f", cache=CacheOptions("on"))
    assert with_header_options(body_writes, {b"lsd-dryrun": "true"}).cache == CacheOptions("read_only")
    assert with_header_options(body_writes, {b"lsd-cache": "off"}).cache == CacheOptions("on")  # the body's
    for options, field in (
        ({b"lsd-cache-max-age-s": "5"}, "lsd-cache-max-age-s"),
        ({b"lsd-cache": "on", b"lsd-cache-max-age-s": "-5"}, "lsd-cache-max-age-s"),
        ({b"lsd-cache": "sometimes"}, "lsd-cache"),
        ({b"lsd-dryrun": "1"}, "lsd-dryrun"),
        ({b"lsd-episode-id": "0192f000-0000-4000-8000-000000000001"}, "lsd-episode-id"),
    ):
        with pytest.raises(InvalidRequest) as refused:
            with_header_options(FUNCTION, options)
        assert refused.value.field == field
