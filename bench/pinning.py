"""`--pin load=0-3,fake=4-5,target=6-11,postgres=12-15`: each part of a benchmark on CPUs of its own.

On a machine with enough cores, pinning keeps the load generator, the fake provider, the server under test and
PostgreSQL from competing for the same cores, so the latencies measured are the server's own. Roles:

    load      this process (the open-loop generator, the writer part) and wrk
    fake      the fake OpenAI server
    target    the server under test (bare proxy, lsd serve and its workers, LiteLLM)
    postgres  the PostgreSQL cluster (its postmaster and every backend)

Child processes are started under `taskset -c CPUS`; this process moves itself with sched_setaffinity, to the
postgres CPUs while it starts the cluster (which inherits them), then to the load CPUs.
"""

from __future__ import annotations

import argparse
import os
import shutil
from collections.abc import Mapping

ROLES = ("load", "fake", "target", "postgres")
Pins = Mapping[str, str]  # role -> a CPU list as taskset takes it ("0-3", "4,6")


def parse(text: str) -> dict[str, str]:
    """`role=cpus,role=cpus`; the CPU lists take `-` ranges and `+` between parts (`0-1+8-9`)."""
    pins: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        role, _, cpus = item.partition("=")
        if role not in ROLES or not cpus:
            raise argparse.ArgumentTypeError(f"{item!r}: expected ROLE=CPUS with ROLE one of {', '.join(ROLES)}")
        cpus = cpus.replace("+", ",")
        try:
            cpu_set(cpus)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r}: CPUS must look like 0-3 or 0-1+4") from None
        pins[role] = cpus
    if pins and shutil.which("taskset") is None:
        raise argparse.ArgumentTypeError("--pin needs taskset (apt-get install -y util-linux)")
    return pins


def cpu_set(cpus: str) -> set[int]:
    """ "0-2,5" -> {0, 1, 2, 5}"""
    out: set[int] = set()
    for part in cpus.split(","):
        low, _, high = part.partition("-")
        out.update(range(int(low), int(high or low) + 1))
    return out


def prefix(pins: Pins, role: str) -> list[str]:
    """The argv prefix that runs a command on the role's CPUs (none when the role is not pinned)."""
    return ["taskset", "-c", pins[role]] if role in pins else []


def move_self(pins: Pins, role: str) -> None:
    """Run this process (and what it starts from now on without taskset) on the role's CPUs."""
    if role in pins:
        os.sched_setaffinity(0, cpu_set(pins[role]))


def role_of(child_name: str) -> str:
    """The role of a child process by its name in bench.children.Children."""
    return "fake" if child_name == "fake" else "target"
