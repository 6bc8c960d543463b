"""Output schema checks: compiled once per distinct schema, invalid schemas never validate."""

from __future__ import annotations

from lsd.inference import schemas


def test_conforms_and_reuses_the_compiled_validator() -> None:
    schemas._compiled.cache_clear()
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    assert schemas.conforms({"a": 1}, schema)
    assert not schemas.conforms({"a": "x"}, schema)
    same_keys_other_order = {"required": ["a"], "properties": {"a": {"type": "integer"}}, "type": "object"}
    assert schemas.conforms({"a": 2}, same_keys_other_order)
    info = schemas._compiled.cache_info()
    assert (info.misses, info.hits) == (1, 2)


def test_an_invalid_schema_validates_nothing() -> None:
    assert not schemas.conforms({"a": 1}, {"type": "no-such-type"})
