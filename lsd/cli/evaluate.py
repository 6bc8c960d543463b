"""`lsd evaluate`: run an evaluation in-process with a progress bar, print its summary, exit 1 below a cutoff."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from lsd.cli.options import Subparsers, add_config_argument, load_checked
from lsd.config.model import Config
from lsd.errors import LsdError
from lsd.evaluations.datasets import (
    Dataset,
    DatasetError,
    from_inferences,
    from_stored_dataset,
    read_inference_filter,
    read_jsonl,
)
from lsd.evaluations.evaluators import build_evaluators
from lsd.evaluations.runner import EvaluationRunner
from lsd.evaluations.summary import RunSummary
from lsd.exits import EXIT_DATABASE, EXIT_OK, EXIT_USAGE, CommandExit
from lsd.inference.models import ModelTable
from lsd.inference.templates import Templates
from lsd.runtime import Runtime, open_runtime
from lsd.startup import database_urls, prepare
from lsd.store.database import DatabaseUrls

EXIT_BELOW_CUTOFF = 1  # also: an invalid config, as for every lsd command


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "evaluate",
        help="run an evaluation: a dataset through a variant, scored by the evaluation's evaluators",
        description="Exit status: 0 ok, 1 an evaluator's mean is on the wrong side of its cutoff (or the config is "
        "invalid), 2 usage or dataset errors, 3 database unreachable, 4 migrations.",
    )
    add_config_argument(p, required_default=True, help="TOML config file or glob, repeatable")
    p.add_argument("--evaluation", required=True, help="the [evaluations.NAME] to run")
    p.add_argument("--variant", required=True, help="the variant of the evaluation's function to evaluate")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", type=Path, help="a JSONL file: one {input, output?, tags?, id?} per line")
    source.add_argument(
        "--from-inferences",
        type=Path,
        metavar="FILTER.json",
        help="stored inferences as the dataset: {function_name?, variant_name?, tags?, limit?}",
    )
    source.add_argument(
        "--dataset-name",
        metavar="NAME",
        help="a stored dataset (POST /v1/datasets/NAME/datapoints): its datapoints of the evaluated function",
    )
    p.add_argument("--concurrency", type=int, default=8, help="datapoints in flight at once (default 8)")
    p.add_argument("--max-datapoints", type=int, default=None, help="run at most this many datapoints")
    p.add_argument("--format", choices=("text", "json"), default="text", help="summary format (default text)")
    return p


def run(args: argparse.Namespace) -> int:
    """The `evaluate` command. Messages go to stderr, the summary to stdout."""
    if args.concurrency < 1:
        raise CommandExit(EXIT_USAGE, "--concurrency must be >= 1")
    if args.max_datapoints is not None and args.max_datapoints < 1:
        raise CommandExit(EXIT_USAGE, "--max-datapoints must be >= 1")
    checked = load_checked(args.config)
    config, models, templates = checked.config, checked.models, checked.templates
    evaluation = config.evaluations.get(args.evaluation)
    if evaluation is None:
        known = ", ".join(sorted(config.evaluations)) or "none"
        raise CommandExit(EXIT_USAGE, f"unknown evaluation {args.evaluation!r} (configured: {known})")
    function = config.functions[evaluation.function_name]
    if args.variant not in function.variants:
        known = ", ".join(sorted(function.variants))
        raise CommandExit(EXIT_USAGE, f"unknown variant {args.variant!r} of {function.name!r} (variants: {known})")
    url = database_urls()
    prepare(config, url)
    summary = asyncio.run(_evaluate(args, config, url, models, templates))
    if args.format == "json":
        sys.stdout.write(orjson.dumps(summary.to_json(), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        write_summary(summary, Console(file=sys.stdout, width=None if sys.stdout.isatty() else 120))
    below = summary.below_cutoff
    if below:
        sys.stderr.write(f"lsd: below cutoff: {', '.join(below)}\n")
        return EXIT_BELOW_CUTOFF
    return EXIT_OK


async def _evaluate(
    args: argparse.Namespace, config: Config, url: DatabaseUrls, models: ModelTable, templates: Templates
) -> RunSummary:
    evaluation = config.evaluations[args.evaluation]
    async with open_runtime(config, url, models=models, templates=templates) as runtime:
        evaluators = build_evaluators(config, evaluation, runtime.engine)  # raises ConfigError
        dataset = await _dataset(args, runtime)
        for problem in dataset.problems:
            sys.stderr.write(f"lsd: skipped {problem}\n")
        if not dataset.datapoints:
            raise CommandExit(EXIT_USAGE, f"no datapoints to run in {dataset.source}")
        runner = EvaluationRunner(
            config=config,
            evaluation=evaluation,
            evaluators=evaluators,
            engine=runtime.engine,
            database=runtime.database,
            recorder=runtime.writer,
        )
        progress = Progress(
            TextColumn(f"{evaluation.name} · {args.variant}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
        )
        with progress:
            task = progress.add_task("datapoints", total=len(dataset.datapoints))
            try:
                return await runner.run(
                    dataset,
                    args.variant,
                    concurrency=args.concurrency,
                    on_datapoint=lambda: progress.advance(task),
                )
            except LsdError as exc:
                raise CommandExit(EXIT_DATABASE, f"the run failed: {exc.message}") from None


async def _dataset(args: argparse.Namespace, runtime: Runtime) -> Dataset:
    evaluation = runtime.config.evaluations[args.evaluation]
    function = runtime.config.functions[evaluation.function_name]
    try:
        if args.dataset is not None:
            return read_jsonl(args.dataset, max_datapoints=args.max_datapoints)
        if args.dataset_name is not None:
            return await from_stored_dataset(
                runtime.database, function, args.dataset_name, max_datapoints=args.max_datapoints
            )
        selection = read_inference_filter(args.from_inferences)
        return await from_inferences(runtime.database, function, selection, max_datapoints=args.max_datapoints)
    except DatasetError as exc:
        raise CommandExit(EXIT_USAGE, str(exc)) from None


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def write_summary(summary: RunSummary, console: Console) -> None:
    """The summary as a table, then totals."""
    table = Table(title=f"evaluation {summary.evaluation_name} · {summary.function_name} · {summary.variant_name}")
    for column in ("evaluator", "type", "mean", "95% CI", "n", "failures", "human", "cutoff", "result"):
        table.add_column(column, justify="left" if column in ("evaluator", "type", "result") else "right")
    for e in summary.evaluators:
        ci = "-" if e.ci_low is None or e.ci_high is None else f"[{e.ci_low:.3f}, {e.ci_high:.3f}]"
        cutoff = "-" if e.cutoff is None else f"{'>=' if e.optimize == 'max' else '<='} {e.cutoff:g}"
        result = {None: "", True: "pass", False: "FAIL"}[e.passed]
        table.add_row(e.name, e.type, _number(e.mean), ci, str(e.n), str(e.failures), str(e.human), cutoff, result)
    console.print(table)
    cost = "unknown (no provider reported a cost)" if summary.cost is None else f"{summary.cost:.6f}"
    console.print(
        f"datapoints: {summary.datapoints} run, {summary.inference_failures} inference failures, "
        f"{len(summary.skipped)} skipped",
        highlight=False,
    )
    console.print(f"cost: {cost}", highlight=False)
    console.print(f"wall time: {summary.wall_time_s:.2f} s", highlight=False)
    console.print(f"run: {summary.run_id}", highlight=False)
