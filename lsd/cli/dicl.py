"""`lsd dicl load | add`: store the examples a dicl variant puts in its prompt (docs/experiments.md).

`load` embeds stored inferences of the variant's function (those with a demonstration, or rated true by a boolean
metric) with the variant's `embedding_model`; `add` embeds examples from a JSONL file. Both go through the gateway's
Embedder (each batch of inputs is an embedding inference, recorded like any) and lsd.store.dicl.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from lsd.cli.options import Subparsers, add_config_argument, load_checked
from lsd.config.model import Config, FunctionConfig, VariantConfig
from lsd.errors import InvalidRequest
from lsd.exits import EXIT_USAGE, CommandExit
from lsd.ids import uuid7
from lsd.inference.embeddings import EmbeddingRequest
from lsd.inference.input_request import parse_input
from lsd.inference.recording import input_to_json
from lsd.inference.variant_types.dicl import input_text
from lsd.runtime import Runtime, open_runtime
from lsd.startup import database_urls, prepare
from lsd.store import dicl

BATCH = 64  # inputs per embedding request


def add_parser(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("dicl", help="examples of dicl variants")
    sub = p.add_subparsers(dest="dicl_command", required=True, metavar="SUBCOMMAND")
    load = sub.add_parser(
        "load", help="store a function's demonstrated or well-rated inferences as a variant's examples"
    )
    add = sub.add_parser("add", help="store examples from a JSONL file of {input, output} lines")
    for command in (load, add):
        add_config_argument(command, required_default=False, help="config files")
        command.add_argument("--function", required=True, help="the function")
        command.add_argument("--variant", required=True, help="its dicl variant")
    source = load.add_mutually_exclusive_group(required=True)
    source.add_argument("--from-demonstrations", action="store_true", help="inferences with a demonstration")
    source.add_argument("--from-metric", metavar="METRIC", help="inferences whose boolean METRIC is true")
    load.add_argument("--limit", type=int, default=10_000, help="the newest this many (default 10000)")
    add.add_argument(
        "file", type=Path, metavar="FILE.jsonl", help='one {"input": {messages, system?}, "output": ...} per line'
    )


def run(args: argparse.Namespace) -> int:
    checked = load_checked(args.config)
    config = checked.config
    function, variant = _dicl_variant(config, args.function, args.variant)
    examples = _read(args.file, function) if args.dicl_command == "add" else None
    metric = None
    if args.dicl_command == "load" and args.from_metric is not None:
        metric = config.metrics.get(args.from_metric)
        if metric is None or metric.type != "boolean":
            raise CommandExit(EXIT_USAGE, f"--from-metric: {args.from_metric!r} is not a boolean metric of the config")
    urls = database_urls()
    prepare(config, urls)

    async def main() -> int:
        async with open_runtime(config, urls, models=checked.models, templates=checked.templates) as runtime:
            sources = examples
            if sources is None:
                database = runtime.database
                if metric is None:
                    sources = await dicl.demonstrated(database, function.name, function.type, args.limit)
                else:
                    sources = await dicl.rated(
                        database, function.name, function.type, metric.name, metric.level, args.limit
                    )
            stored = await _store(runtime, function, variant, sources)
        sys.stdout.write(
            f"{stored} examples stored for {function.name}.{variant.name} "
            f"({len(sources) - stored} of {len(sources)} were already there)\n"
        )
        return 0

    return asyncio.run(main())


def _dicl_variant(config: Config, function_name: str, variant_name: str) -> tuple[FunctionConfig, VariantConfig]:
    function = config.functions.get(function_name)
    if function is None:
        raise CommandExit(EXIT_USAGE, f"--function: no function {function_name!r} in the config")
    variant = function.variants.get(variant_name)
    if variant is None or variant.dicl is None:
        raise CommandExit(EXIT_USAGE, f"--variant: {function_name!r} has no dicl variant {variant_name!r}")
    return function, variant


def _read(path: Path, function: FunctionConfig) -> list[dicl.Source]:
    """The file's examples, inputs parsed as /inference parses them (so they embed as requests' inputs do)."""
    sources: list[dicl.Source] = []
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise CommandExit(EXIT_USAGE, f"{path}: {exc.strerror}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = orjson.loads(line)
            if not isinstance(entry, dict) or "input" not in entry or "output" not in entry:
                raise InvalidRequest('expected {"input": ..., "output": ...}')
            stored_input = input_to_json(parse_input(entry["input"], "input"))
        except (orjson.JSONDecodeError, InvalidRequest) as exc:
            raise CommandExit(EXIT_USAGE, f"{path}:{number}: {exc}") from None
        sources.append(dicl.Source(None, stored_input, _output(entry["output"], function.type)))
    return sources


def _output(value: Any, function_type: str) -> Any:
    """An example's output as inference rows store it: chat blocks (a string is one text block), json {raw, parsed}."""
    if function_type == "json":
        return {"raw": orjson.dumps(value).decode(), "parsed": value}
    return [{"type": "text", "text": value}] if isinstance(value, str) else value


async def _store(
    runtime: Runtime, function: FunctionConfig, variant: VariantConfig, sources: Sequence[dicl.Source]
) -> int:
    assert variant.dicl is not None
    stored = 0
    now = datetime.now(UTC)
    for start in range(0, len(sources), BATCH):
        batch = sources[start : start + BATCH]
        embedded = await runtime.embedder.embed(
            EmbeddingRequest(model_name=variant.dicl.embedding_model, inputs=tuple(input_text(s.input) for s in batch))
        )
        examples = [
            dicl.DiclExample(
                id=uuid7(),
                function_name=function.name,
                variant_name=variant.name,
                input=source.input,
                output=source.output,
                embedding=vector,
                created_at=now,
                source_inference_id=source.inference_id,
            )
            for source, vector in zip(batch, embedded.embeddings, strict=True)
        ]
        stored += await dicl.insert(runtime.database, examples)
    return stored
