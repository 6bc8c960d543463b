"""The `cost` and `batch_cost` options: a price per million tokens, or TensorZero's list of JSON pointers.

Two forms, both read by `parse_cost`:

- the table `{ input_per_million, output_per_million, cache_read_per_million?, cache_write_per_million? }`
  (`Pricing`) prices the normalised token counts; cached input tokens at their own rates when these are set;
- TensorZero's list `[{ pointer, cost_per_million | cost_per_unit, required }, ...]` (`PointerPricing`) reads
  numbers out of the provider's own answer: the response object of a plain call, every event of a stream. Each
  entry adds value * rate; an entry whose field is absent adds nothing unless it is `required`, which makes the
  whole cost null. A value that is not a number, or a negative total, makes it null too (TensorZero's rules).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lsd.config.reader import Table
from lsd.immutable import immutable
from lsd.types import Usage

# OpenAI's Batch API and Anthropic's Message Batches both bill half the live price.
BATCH_DISCOUNT = 0.5
_MISSING: Any = object()


@immutable
class Pricing:
    """The table form: price per million input and output tokens, and optionally per million input tokens read
    from or written to the provider's prompt cache (None: those are priced as other input tokens)."""

    input_per_million: float
    output_per_million: float
    cache_read_per_million: float | None = None
    cache_write_per_million: float | None = None

    def price(self, usage: Usage, answers: Sequence[Any] = (), *, streamed: bool = False) -> float | None:
        """What `usage` costs; None when the provider reported no token counts at all (`answers` unused). The
        cache counts are parts of `input_tokens`: those with a rate of their own leave the plain input count."""
        if usage.input_tokens is None and usage.output_tokens is None:
            return None
        plain = usage.input_tokens or 0
        spent = 0.0
        for tokens, rate in (
            (usage.cache_read_input_tokens, self.cache_read_per_million),
            (usage.cache_write_input_tokens, self.cache_write_per_million),
        ):
            if tokens and rate is not None:
                plain -= tokens
                spent += tokens * rate
        spent += max(plain, 0) * self.input_per_million
        return (spent + (usage.output_tokens or 0) * self.output_per_million) / 1e6

    def cost_of(self, usage: Usage) -> float | None:
        return self.price(usage)

    def scaled(self, factor: float) -> Pricing:
        read, write = self.cache_read_per_million, self.cache_write_per_million
        return Pricing(
            self.input_per_million * factor,
            self.output_per_million * factor,
            None if read is None else read * factor,
            None if write is None else write * factor,
        )


@immutable
class CostEntry:
    """One entry of the list form: where the number is (in a plain answer, in a stream's events), its price
    per unit, and whether an answer without it has no cost at all."""

    pointer_nonstreaming: tuple[str, ...]  # the pointer, split into reference tokens
    pointer_streaming: tuple[str, ...]
    cost_per_unit: float
    required: bool = False


@immutable
class PointerPricing:
    """The list form: the sum over its entries of the number each points at times its rate."""

    entries: tuple[CostEntry, ...]

    def price(self, usage: Usage, answers: Sequence[Any], *, streamed: bool = False) -> float | None:
        """The cost of an answer given as decoded JSON: one object for a plain call, or each event of a stream
        (an entry takes the largest value it finds among them, as cumulative counts only grow). None when a
        required field is missing, a field is not a number, or the total is negative (`usage` unused)."""
        total = 0.0
        for entry in self.entries:
            tokens = entry.pointer_streaming if streamed else entry.pointer_nonstreaming
            found: float | None = None
            for answer in answers:
                value = resolve(answer, tokens)
                if value is _MISSING or value is None:
                    continue
                number = _number(value)
                if number is None:
                    return None
                found = number if found is None else max(found, number)
            if found is None:
                if entry.required:
                    return None
                continue
            total += found * entry.cost_per_unit
        return total if total >= 0 else None

    def scaled(self, factor: float) -> PointerPricing:
        return PointerPricing(
            tuple(
                CostEntry(e.pointer_nonstreaming, e.pointer_streaming, e.cost_per_unit * factor, e.required)
                for e in self.entries
            )
        )


Cost = Pricing | PointerPricing


def resolve(document: Any, tokens: Sequence[str]) -> Any:
    """The value at a JSON pointer's reference tokens in `document`, or _MISSING."""
    value = document
    for token in tokens:
        if isinstance(value, Mapping):
            value = value.get(token, _MISSING)
        elif isinstance(value, list) and token.isdigit() and (token == "0" or not token.startswith("0")):
            index = int(token)
            value = value[index] if index < len(value) else _MISSING
        else:
            return _MISSING
        if value is _MISSING:
            return _MISSING
    return value


def _number(value: Any) -> float | None:
    """A JSON number, or a string holding one (some providers quote costs); None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def pointer_tokens(pointer: str) -> tuple[str, ...] | None:
    """A JSON pointer (RFC 6901) split into unescaped reference tokens; None when it is not one."""
    if pointer == "":
        return ()
    if not pointer.startswith("/"):
        return None
    tokens = []
    for raw in pointer[1:].split("/"):
        if "~" in raw.replace("~0", "").replace("~1", ""):
            return None
        tokens.append(raw.replace("~1", "/").replace("~0", "~"))
    return tuple(tokens)


def parse_cost(options: Table, key: str = "cost") -> Cost | None:
    """The `cost` (or `batch_cost`) option in either form; None when absent or invalid (the errors, naming
    the key path, go to `options`)."""
    if not options.has(key):
        return None
    value = options.raw(key)
    if isinstance(value, list):
        return _parse_entries(options, key, value)
    if not isinstance(value, dict):
        options.error(key, "expected a table {input_per_million, output_per_million} or a list of tables")
        return None
    table = options.table(key)
    prices = []
    for name in ("input_per_million", "output_per_million"):
        if not table.has(name):
            table.error(name, "missing required key")
        prices.append(table.float(name, 0.0, minimum=0.0))
    cache_read = table.float("cache_read_per_million", minimum=0.0)
    cache_write = table.float("cache_write_per_million", minimum=0.0)
    table.finish()
    return Pricing(prices[0], prices[1], cache_read, cache_write)


def parse_batch_cost(options: Table, live: Cost | None) -> Cost | None:
    """`batch_cost` when set, else the live `cost` at BATCH_DISCOUNT, else None."""
    explicit = parse_cost(options, "batch_cost")
    if explicit is not None or live is None:
        return explicit
    return live.scaled(BATCH_DISCOUNT)


def _parse_entries(options: Table, key: str, items: list[Any]) -> PointerPricing | None:
    before = len(options.sink.errors)
    entries = []
    for index, item in enumerate(items):
        path = f"{options.key_path(key)}[{index}]"
        if not isinstance(item, dict):
            options.sink.add(path, f"expected a table {{pointer, cost_per_million | cost_per_unit}}, got {item!r}")
            continue
        entry = _parse_entry(Table(item, path, options.sink, options.base_dir))
        if entry is not None:
            entries.append(entry)
    return PointerPricing(tuple(entries)) if len(options.sink.errors) == before else None


def _parse_entry(table: Table) -> CostEntry | None:
    pointers = {name: table.str(name, env=False) for name in ("pointer", "pointer_nonstreaming", "pointer_streaming")}
    tokens = {name: _tokens(table, name, value) for name, value in pointers.items() if value is not None}
    per_million, per_unit = table.float("cost_per_million"), table.float("cost_per_unit")
    required = table.bool("required", False)
    table.finish()
    split = pointers["pointer_nonstreaming"] is not None or pointers["pointer_streaming"] is not None
    if pointers["pointer"] is not None and split:
        table.error("pointer", "set either `pointer` or both `pointer_nonstreaming` and `pointer_streaming`")
        return None
    if split and (pointers["pointer_nonstreaming"] is None or pointers["pointer_streaming"] is None):
        missing = "pointer_streaming" if pointers["pointer_streaming"] is None else "pointer_nonstreaming"
        table.error(missing, "missing required key (`pointer_nonstreaming` and `pointer_streaming` go together)")
        return None
    if not split and pointers["pointer"] is None:
        table.error("pointer", "missing required key")
        return None
    if table.has("cost_per_million") == table.has("cost_per_unit"):
        table.error("cost_per_million", "set exactly one of `cost_per_million` and `cost_per_unit`")
        return None
    if per_million is None and per_unit is None:
        return None  # not a number, reported
    rate = per_unit if per_unit is not None else per_million / 1e6
    nonstreaming = tokens.get("pointer_nonstreaming", tokens.get("pointer"))
    streaming = tokens.get("pointer_streaming", tokens.get("pointer"))
    if nonstreaming is None or streaming is None:
        return None  # an invalid pointer, reported
    return CostEntry(nonstreaming, streaming, rate, bool(required))


def _tokens(table: Table, key: str, value: Any) -> tuple[str, ...] | None:
    if not isinstance(value, str):
        return None
    tokens = pointer_tokens(value)
    if tokens is None:
        table.error(key, f"expected a JSON pointer such as '/usage/prompt_tokens', got {value!r}")
    return tokens
