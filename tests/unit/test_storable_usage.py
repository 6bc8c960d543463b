"""A token count the integer columns cannot hold (a provider's bug) is stored as NULL, never as another number:
binary COPY would wrap 3,000,000,000 into -1,294,967,296."""

from __future__ import annotations

from lsd.ids import uuid7
from lsd.inference.recording import INT4_MAX, Attempt, attempt_records, storable
from lsd.records import ModelInferenceRecord
from lsd.types import Usage


def test_counts_outside_the_column_are_null_and_the_others_kept() -> None:
    usage = Usage(3_000_000_000, 12, -5, INT4_MAX)
    assert storable(usage) == Usage(None, 12, None, INT4_MAX)
    fine = Usage(10, 5)
    assert storable(fine) is fine  # the common case builds nothing


def test_an_attempt_with_a_wrapping_count_is_recorded_with_null() -> None:
    attempt = Attempt("v", "m", "p", "openai", 1_700_000_000_000, 5, usage=Usage(3_000_000_000, 7))
    [record] = [r for r in attempt_records(uuid7(), "chat", "f", [attempt]) if isinstance(r, ModelInferenceRecord)]
    assert (record.input_tokens, record.output_tokens) == (None, 7)
