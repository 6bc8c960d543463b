"""`lsd experiments show F`: a function's experiment, its stored weights and their evidence, from PostgreSQL."""

from __future__ import annotations

import argparse
import sys

import orjson

from lsd.api.experiments import report_json
from lsd.cli.options import Subparsers, add_config_argument, config_patterns
from lsd.config import load_many
from lsd.errors import UnknownFunction
from lsd.exits import EXIT_OK
from lsd.inference.experiment import ExperimentReport, from_row, report
from lsd.startup import database_urls
from lsd.store.database import connect_with_retry
from lsd.store.experiments import load_allocation_sync


def add_parser(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("experiments", help="variant experiments ([functions.F.experimentation])")
    sub = p.add_subparsers(dest="experiments_command", required=True, metavar="SUBCOMMAND")
    show = sub.add_parser(
        "show",
        help="a function's experiment: candidates, current weights, per-variant evidence, winner",
        description="Reads the config and, for an adaptive experiment, the allocation stored in LSD_DATABASE_URL "
        "(the weights every replica samples with). Exit status: 0 ok, 2 usage or unknown function, 3 database "
        "unreachable.",
    )
    show.add_argument("function", help="the function name")
    show.add_argument("--json", action="store_true", help="print GET /v1/functions/F/experiment's JSON")
    add_config_argument(show, required_default=True, help="config files")


def run(args: argparse.Namespace) -> int:
    config = load_many(config_patterns(args.config))
    function = config.functions.get(args.function)
    if function is None:
        raise UnknownFunction(args.function, field=None)
    allocation = None
    experiment = function.experimentation
    if experiment is not None and experiment.type == "adaptive":
        urls = database_urls()
        with connect_with_retry(urls.primary, config.gateway.database.connect_timeout_s) as conn:
            row = load_allocation_sync(conn, function.name)
        allocation = from_row(row) if row is not None else None
    found = report(function, config.metrics, allocation)
    if args.json:
        sys.stdout.write(orjson.dumps(report_json(found)).decode() + "\n")
    else:
        sys.stdout.write(render(found))
    return EXIT_OK


def render(r: ExperimentReport) -> str:
    """The report as text: a header, then one line per candidate (weight, and for adaptive the evidence)."""
    lines = [f"function {r.function_name}: {r.type} experiment ({_source(r)})"]
    if r.type == "adaptive" and r.experiment is not None:
        e, m = r.experiment, r.metric
        how = f"{m.type}, optimize {m.optimize}, {m.level} level" if m else "unknown metric"
        lines.append(
            f"metric {e.metric} ({how}); delta {e.delta:g}, epsilon {e.epsilon:g}, min_prob {e.min_prob:g}, "
            f"min_samples_per_variant {e.min_samples_per_variant}, update_period_s {e.update_period_s}"
        )
        state = f"phase {r.phase}"
        if r.stopped:
            state += f": winner {r.winner}, stopped at {r.stopped_at.isoformat() if r.stopped_at else '?'}"
        if r.updated_at is not None:
            state += f" (updated {r.updated_at.isoformat()})"
        lines.append(state)
    header = f"{'variant':<24} {'weight':>7}"
    if r.type == "adaptive":
        header += f" {'count':>7} {'mean':>9} {'interval':>23} {'p_best':>7}"
    lines.append(header)
    for name in r.candidates:
        line = f"{name:<24} {r.weights.get(name, 0.0):>7.3f}"
        v = r.evidence.get(name)
        if r.type == "adaptive":
            if v is None:
                line += f" {0:>7} {'-':>9} {'-':>23} {'-':>7}"
            else:
                mean = "-" if v.mean is None else f"{v.mean:.4f}"
                interval = "-" if v.lower is None or v.upper is None else f"[{v.lower:.4f}, {v.upper:.4f}]"
                p_best = "-" if v.p_best is None else f"{v.p_best:.3f}"
                line += f" {v.count:>7} {mean:>9} {interval:>23} {p_best:>7}"
                if v.eliminated:
                    line += "  eliminated"
        lines.append(line)
    if r.fallbacks:
        lines.append("fallbacks: " + ", ".join(r.fallbacks))
    return "\n".join(lines) + "\n"


def _source(r: ExperimentReport) -> str:
    return {
        "variant_weights": "no experimentation table: the variants' weight",
        "config": "weights from the config",
        "stored": "weights stored by the experiments job",
        "default": "nothing stored yet for this config: uniform exploration",
    }[r.source]
