"""`lsd batch submit|status|wait`: batch inference from the command line, straight through the runtime.

The commands open the same runtime as `lsd serve` (config, PostgreSQL at LSD_DATABASE_URL, providers), so
they need no running gateway, and their polls share the cluster-wide rate limit and the exactly-once
recording with every gateway replica. Messages and progress go to stderr; ids and results to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any
from uuid import UUID

import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from lsd.api.tensorzero_wire import batch_view_json, stored_result_json, submission_json
from lsd.cli.options import Subparsers, add_config_argument, load_checked
from lsd.config.model import Config
from lsd.errors import LsdError
from lsd.exits import EXIT_OK, EXIT_USAGE, CommandExit
from lsd.inference.batch import BatchService, BatchView
from lsd.inference.batch_request import parse_batch_request
from lsd.inference.models import ModelTable
from lsd.inference.templates import Templates
from lsd.runtime import open_runtime
from lsd.startup import database_urls, prepare
from lsd.store.database import DatabaseUrls

EXIT_FAILED = 1  # the batch failed (or the config is invalid)
EXIT_TIMEOUT = 5
# Per-line keys of a submit file besides `input`, and the batch list each feeds.
_LINE_KEYS = {
    "episode_id": "episode_ids",
    "tags": "tags",
    "output_schema": "output_schemas",
    "allowed_tools": "allowed_tools",
    "additional_tools": "additional_tools",
    "tool_choice": "tool_choice",
    "parallel_tool_calls": "parallel_tool_calls",
}


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "batch",
        help="batch inference through the providers' batch APIs",
        description="Exit status: 0 ok, 1 the batch failed (or the config is invalid), 2 usage or input errors, "
        "3 database unreachable, 4 migrations, 5 wait timed out.",
    )
    add_config_argument(p, required_default=True, help="TOML config file or glob, repeatable")
    sub = p.add_subparsers(dest="batch_command", required=True, metavar="SUBCOMMAND")
    submit = sub.add_parser("submit", help="submit a JSONL file of inputs; prints the batch id")
    submit.add_argument("--function", required=True, help="the function to run")
    submit.add_argument("--variant", default=None, help="pin a variant (default: sampled once for the batch)")
    submit.add_argument(
        "file", type=Path, metavar="FILE.jsonl", help="one input per line: {messages, system?} or {input, tags?, ...}"
    )
    status = sub.add_parser("status", help="the batch's status (polls the provider, rate limited); JSON on stdout")
    status.add_argument("batch_id")
    wait = sub.add_parser("wait", help="wait until the batch ends, then write its results as JSONL")
    wait.add_argument("batch_id")
    wait.add_argument("--output", type=Path, default=None, help="results file (default: stdout)")
    wait.add_argument("--timeout", type=float, default=None, help="give up after this many seconds")
    wait.add_argument("--interval", type=float, default=None, help="seconds between checks (default poll_interval_s)")
    return p


def run(args: argparse.Namespace) -> int:
    checked = load_checked(args.config)
    config, models, templates = checked.config, checked.models, checked.templates
    url = database_urls()
    if args.batch_command == "submit":
        body = read_inputs(args.file, args.function, args.variant)
    else:
        batch_id = _uuid(args.batch_id)
    prepare(config, url)

    async def command(service: BatchService) -> int:
        if args.batch_command == "submit":
            return await _submit(service, body)
        if args.batch_command == "status":
            view = await service.status(batch_id)
            sys.stdout.write(orjson.dumps(batch_view_json(view)).decode() + "\n")
            return EXIT_FAILED if view.status == "failed" else EXIT_OK
        interval = args.interval if args.interval is not None else config.gateway.batch.poll_interval_s
        return await _wait(service, batch_id, args.output, args.timeout, interval)

    return asyncio.run(_with_service(config, url, models, templates, command))


async def _with_service(
    config: Config, url: DatabaseUrls, models: ModelTable, templates: Templates, command: Callable[[BatchService], Any]
) -> int:
    async with open_runtime(config, url, models=models, templates=templates) as runtime:
        code: int = await command(runtime.batches)  # an LsdError is reported by lsd.cli's error exit
        return code


def _uuid(value: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise CommandExit(EXIT_USAGE, f"not a batch id: {value!r}") from None


def read_inputs(path: Path, function: str, variant: str | None) -> dict[str, Any]:
    """The `/batch_inference` body for a JSONL file: each line an input object ({messages, system?}) or
    {input, episode_id?, tags?, output_schema?, allowed_tools?, ...}. Blank lines are skipped."""
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise CommandExit(EXIT_USAGE, f"cannot read {path}: {exc.strerror}") from None
    entries: list[dict[str, Any]] = []
    progress = _progress(f"reading {path.name}")
    with progress:
        task = progress.add_task("lines", total=len(lines))
        for number, raw in enumerate(lines, start=1):
            progress.advance(task)
            if not raw.strip():
                continue
            try:
                entry = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise CommandExit(EXIT_USAGE, f"{path}:{number}: not JSON: {exc}") from None
            if not isinstance(entry, dict):
                raise CommandExit(EXIT_USAGE, f"{path}:{number}: expected a JSON object")
            entries.append(entry if "input" in entry else {"input": entry})
    if not entries:
        raise CommandExit(EXIT_USAGE, f"{path}: no inputs")
    body: dict[str, Any] = {"function_name": function, "inputs": [e["input"] for e in entries]}
    if variant is not None:
        body["variant_name"] = variant
    for key, batch_key in _LINE_KEYS.items():
        if any(key in e for e in entries):
            body[batch_key] = [e.get(key) for e in entries]
    return body


async def _submit(service: BatchService, body: dict[str, Any]) -> int:
    try:
        request = parse_batch_request(body)
    except LsdError as exc:
        raise CommandExit(EXIT_USAGE, f"{exc.message} (inputs[i] is the i-th input line, from 0)") from None
    console = Console(stderr=True)
    with console.status(f"uploading {len(request.requests)} inputs to the provider"):
        submitted = await service.submit(request)
    console.print(f"submitted {len(submitted.inference_ids)} inputs as batch {submitted.batch_id}", highlight=False)
    sys.stdout.write(orjson.dumps(submission_json(submitted)).decode() + "\n")
    return EXIT_OK


async def _wait(
    service: BatchService, batch_id: UUID, output: Path | None, limit_s: float | None, interval: float
) -> int:
    deadline = None if limit_s is None else time.monotonic() + limit_s
    progress = _progress(f"batch {batch_id}")
    with progress:
        view = await service.status(batch_id)
        task = progress.add_task(view.provider_status or view.status, total=view.num_inferences)
        while view.status == "pending":
            if deadline is not None and time.monotonic() >= deadline:
                raise CommandExit(EXIT_TIMEOUT, f"batch {batch_id} is still pending after {limit_s:g} s")
            await asyncio.sleep(interval)
            view = await service.status(batch_id)
            progress.update(task, description=view.provider_status or view.status)
        progress.update(task, completed=view.num_inferences, description=view.status)
    _write_results(view, output)
    failed = len([e for e in view.errors if "inference_id" in e])
    sys.stderr.write(
        f"lsd: batch {view.status} ({view.provider_status}): {len(view.inferences)} results, {failed} failed inputs\n"
    )
    return EXIT_FAILED if view.status == "failed" else EXIT_OK


def _write_results(view: BatchView, output: Path | None) -> None:
    """One line per input, in the inputs' order: its inference (TensorZero's /inference shape, as
    `GET /batch_inference/{id}` gives it), or {inference_id, error}."""
    lines = [(str(i.inference_id), stored_result_json(i)) for i in view.inferences]
    lines += [
        (str(e["inference_id"]), {"inference_id": str(e["inference_id"]), "error": e["message"]})
        for e in view.errors
        if "inference_id" in e
    ]
    lines.sort(key=lambda line: line[0])  # UUIDv7s, made in the inputs' order
    data = b"".join(orjson.dumps(line) + b"\n" for _, line in lines)
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        output.write_bytes(data)


def _progress(label: str, file: IO[str] | None = None) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn(label),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True, file=file),
    )
