"""PNG plots of a bench results file: the latency lsd adds to a direct call, and concurrent streams against TTFT.

    python -m bench.plots bench/results/20261206T060000Z.json                  # PNGs next to the JSON
    python -m bench.plots bench/results/20261206T060000Z.json --out docs/images

`perf-overhead-vs-rate.png` comes from part 1 (`results["gateway"]["direct"]`: each target's latency minus the
fake's, called directly at the same rate and percentile), `perf-streams-ttft.png` from the streams part
(`results["streams"]["targets"]`: TTFT p99 of each target minus the fake's at the same number of streams, with
the 5 ms limit a level must stay under to count as held). A plot whose part is not in the file is skipped.
Next to the JSON the names get the JSON's stem as a prefix, so the plots of different runs do not overwrite
each other; with --out they do not (docs/images keeps one copy of each). Draws with matplotlib's Agg backend
(no display, no network); without matplotlib, `write` draws nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

try:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot
    from matplotlib.figure import Figure
except ImportError:  # matplotlib is in lsd's dev extra: a bench without it still runs, without plots
    pyplot = None  # type: ignore[assignment]

from bench.streams import DELAY_LIMIT_MS, TTFT_LIMIT_MS

OVERHEAD_PNG = "perf-overhead-vs-rate.png"
STREAMS_PNG = "perf-streams-ttft.png"
TARGETS = ("bare", "lsd", "lsd2")  # drawn when present; the fake is the baseline, not a line
STYLE = {
    "bare": ("tab:gray", "bare proxy"),
    "lsd": ("tab:blue", "lsd (recording)"),
    "lsd2": ("tab:green", "lsd, 2 workers"),
    "lsd-norec": ("tab:purple", "lsd, recording off"),
}


def available() -> bool:
    return pyplot is not None


def _label(name: str) -> tuple[str, str]:
    return STYLE.get(name, ("tab:red", name))


def overhead_points(gateway: dict[str, Any]) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """Per target, per percentile ("p50", "p99"): (req/s, ms added to the direct call), by rate."""
    out: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for name, entry in gateway.get("direct", {}).items():
        series: dict[str, list[tuple[float, float]]] = {"p50": [], "p99": []}
        for key, run in sorted(entry.get("rates", {}).items(), key=lambda kv: float(kv[0])):
            for q in series:
                if (value := run.get(f"{q}_overhead_ms")) is not None:
                    series[q].append((float(key), float(value)))
        if any(series.values()):
            out[name] = series
    return out


def streams_points(streams: dict[str, Any], metric: str = "ttft_p99_ms") -> dict[str, list[tuple[int, float]]]:
    """Per target: (concurrent streams, `metric` (TTFT p99, or delay_p99_ms: the per-token delay p99) minus the
    direct fake's at the same level, ms), by level."""
    targets: dict[str, dict[str, Any]] = streams.get("targets", {})
    direct = targets.get("fake", {})
    out: dict[str, list[tuple[int, float]]] = {}
    for name, levels in targets.items():
        if name == "fake":
            continue
        points = []
        for key, level in sorted(levels.items(), key=lambda kv: int(kv[0])):
            base = direct.get(key)
            if base and level.get(metric) is not None and base.get(metric) is not None:
                points.append((int(key), float(level[metric]) - float(base[metric])))
        if points:
            out[name] = points
    return out


def _order(names: list[str]) -> list[str]:
    return sorted(names, key=lambda n: (TARGETS.index(n) if n in TARGETS else len(TARGETS), n))


def overhead_figure(points: dict[str, dict[str, list[tuple[float, float]]]], title: str) -> Figure:
    figure, axes = pyplot.subplots(figsize=(7, 4.2), layout="constrained")
    for name in _order(list(points)):
        color, label = _label(name)
        for q, style in (("p50", "--"), ("p99", "-")):
            if series := points[name][q]:
                axes.plot(*zip(*series, strict=True), style, marker="o", color=color, label=f"{label} {q}")
    axes.axhline(1.0, color="tab:red", linewidth=0.8, linestyle=":", label="1 ms (issue #23's p99 goal)")
    axes.axhline(0.0, color="black", linewidth=0.5)
    # Linear up to 1 ms (the goal's scale), logarithmic above: a saturated rate's seconds do not flatten the rest.
    axes.set_yscale("symlog", linthresh=1.0)
    axes.set_xlabel("open-loop rate (req/s)")
    axes.set_ylabel("latency added to a direct call (ms)")
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return figure


def streams_figure(
    points: dict[str, list[tuple[int, float]]],
    held: dict[str, int],
    title: str,
    delays: dict[str, list[tuple[int, float]]] | None = None,
) -> Figure:
    """TTFT p99 added against concurrent streams and, beside it when given, the per-token delay p99 added: the
    two limits a target must stay within to hold a level."""
    panels = [("TTFT p99 added to a direct call (ms)", points, TTFT_LIMIT_MS)]
    if delays:
        panels.append(("per-token delay p99 added (ms)", delays, DELAY_LIMIT_MS))
    figure, axes_list = pyplot.subplots(1, len(panels), figsize=(7 * len(panels) * 0.75, 4.2), layout="constrained")
    axes_list = list(axes_list) if len(panels) > 1 else [axes_list]
    for axes, (ylabel, series, limit) in zip(axes_list, panels, strict=True):
        for name in _order(list(series)):
            color, label = _label(name)
            label += f" (held {held[name]})" if name in held else ""
            axes.plot(*zip(*series[name], strict=True), "-", marker="o", color=color, label=label)
        levels = sorted({level for s in series.values() for level, _ in s})
        axes.set_xscale("log")  # levels from 10 to hundreds: a linear axis crowds the low ones
        axes.set_xticks(levels, [str(level) for level in levels])
        axes.minorticks_off()
        axes.axhline(limit, color="tab:red", linewidth=0.8, linestyle=":", label=f"{limit:g} ms limit")
        axes.axhline(0.0, color="black", linewidth=0.5)
        # Linear up to the limit, logarithmic above: one collapsed level does not flatten the others.
        axes.set_yscale("symlog", linthresh=limit)
        axes.set_ylim(bottom=min(0.0, *(v for s in series.values() for _, v in s)))
        axes.set_xlabel("concurrent streams")
        axes.set_ylabel(ylabel)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    figure.suptitle(title, fontsize=10)
    return figure


def _title(results: dict[str, Any], what: str) -> str:
    """What was measured, then how many CPUs and the load average when the run started (other work skews it)."""
    cpus = results.get("machine", {}).get("cpu_count")
    load = results.get("loadavg", {}).get("start")
    machine = ([f"{cpus} CPUs"] if cpus else []) + ([f"load average {load} at the start"] if load else [])
    return "\n".join([what, ", ".join(machine)] if machine else [what])


def write(results: dict[str, Any], out_dir: Path, prefix: str = "") -> list[Path]:
    """Draw every plot the results hold into out_dir; returns the files written (none without matplotlib)."""
    if pyplot is None:
        return []
    written: list[Path] = []
    figures: list[tuple[str, Figure]] = []
    if overhead := overhead_points(results.get("gateway") or {}):
        figures.append((OVERHEAD_PNG, overhead_figure(overhead, _title(results, "latency added to a direct call"))))
    if streams := streams_points(results.get("streams") or {}):
        settings = (results.get("streams") or {}).get("settings", {})
        what = f"streams of {settings.get('tokens', '?')} tokens at {settings.get('token_rate', '?')} tokens/s"
        held = (results.get("streams") or {}).get("held", {})
        delays = streams_points(results.get("streams") or {}, "delay_p99_ms")
        figures.append((STREAMS_PNG, streams_figure(streams, held, _title(results, what), delays)))
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, figure in figures:
        path = out_dir / f"{prefix}{name}"
        figure.savefig(path, dpi=110)
        pyplot.close(figure)
        written.append(path)
    return written


def write_beside(results: dict[str, Any], json_path: Path) -> list[Path]:
    """The plots next to a results file, named after it (`python -m bench.run` calls this after saving)."""
    return write(results, json_path.parent, prefix=f"{json_path.stem}-")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.plots", description=__doc__.splitlines()[0])
    p.add_argument("results", type=Path, help="a bench results file (bench/results/*.json)")
    p.add_argument("--out", type=Path, help="folder for the PNGs, without prefix (default: next to the JSON)")
    args = p.parse_args(argv)
    if not available():
        print("matplotlib is not installed: pip install matplotlib", file=sys.stderr)
        return 2
    results = orjson.loads(args.results.read_bytes())
    paths = write(results, args.out) if args.out else write_beside(results, args.results)
    if not paths:
        print(f"{args.results}: no gateway `direct` overheads and no streams levels to plot", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
