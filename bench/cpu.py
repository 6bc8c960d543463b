"""CPU accounting around a measurement: the machine's busy share, ours, and what other processes took.

On a small shared machine another process's work (a test suite, say) slows every server measured here; the
results carry `others_pct` so that a reader can tell a quiet run from a disturbed one.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from bench.children import process_tree


def _machine() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    busy = user + nice + system + irq + softirq + steal
    return busy, busy + idle + iowait


def machine_cpu_s() -> float:
    """CPU seconds every process on the machine has used so far (all CPUs), from /proc/stat."""
    return _machine()[0] / os.sysconf("SC_CLK_TCK")


def _jiffies(pid: int) -> int:
    """utime + stime + cutime + cstime of one process (children it reaped included)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    rest = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return sum(int(v) for v in rest[11:15])


@dataclass(frozen=True, slots=True)
class CpuShare:
    """Percentages of the whole machine (all CPUs = 100) over the measured interval."""

    machine_pct: float
    ours_pct: float
    others_pct: float
    seconds: float


class CpuMeter:
    """`with CpuMeter(roots) as meter: ...`, then `meter.share`. `roots` gives the pids whose process trees
    are ours (this process, PostgreSQL's postmaster), asked at the start and at the end."""

    def __init__(self, roots: Callable[[], Iterable[int]]) -> None:
        self._roots = roots
        self.share: CpuShare | None = None

    def _ours(self) -> int:
        pids = {pid for root in self._roots() for pid in process_tree(root)}
        return sum(_jiffies(pid) for pid in pids)

    def __enter__(self) -> CpuMeter:
        self._start = (*_machine(), self._ours(), time.monotonic())
        return self

    def __exit__(self, *exc_info: object) -> None:
        busy0, total0, ours0, t0 = self._start
        busy1, total1 = _machine()
        ours1 = self._ours()
        total = max(total1 - total0, 1)
        machine = 100 * (busy1 - busy0) / total
        # /proc/stat counts all CPUs; a process's jiffies are CPU time too, so both share one scale.
        ours = min(100 * (ours1 - ours0) / total, machine)
        self.share = CpuShare(round(machine, 1), round(ours, 1), round(machine - ours, 1), time.monotonic() - t0)


def tree_cpu_s(root: int | None) -> float:
    """CPU seconds (user + system) used so far by a process tree: what one server costs, whatever else runs."""
    if not root:
        return 0.0
    return sum(_jiffies(pid) for pid in process_tree(root)) / os.sysconf("SC_CLK_TCK")


def own_roots(postmaster_pid: Callable[[], int | None]) -> Callable[[], list[int]]:
    """This process and the PostgreSQL cluster's postmaster (pg_ctl daemonises it: not our child)."""

    def roots() -> list[int]:
        pids = [os.getpid()]
        with contextlib.suppress(OSError, ValueError):
            pid = postmaster_pid()
            if pid:
                pids.append(pid)
        return pids

    return roots


def wait_quiet(roots: Callable[[], Iterable[int]], max_wait_s: float, threshold_pct: float = 10.0) -> float:
    """Wait, up to `max_wait_s`, for a 2-second window in which other processes use under `threshold_pct` of
    the machine. Returns the seconds waited (0.0 at once when `max_wait_s` is 0)."""
    started = time.monotonic()
    while time.monotonic() - started < max_wait_s:
        with CpuMeter(roots) as meter:
            time.sleep(2.0)
        if meter.share is not None and meter.share.others_pct < threshold_pct:
            break
    return time.monotonic() - started
