"""Where the tests' own PostgreSQL clusters live, and the clean-up of those a killed run left behind.

Every test copies a template database (~1,200 relation files) and drops its copy; on ext4 each copy got slower as
the deleted files piled up (0.05 s a copy at first, 0.8 s after 150 copies, a core busy in the kernel's inode
allocator), where tmpfs stays at ~0.03 s. So a cluster goes in /dev/shm when it is a big enough tmpfs
(`LSD_TEST_PG_DIR` chooses the folder). A run that is killed (SIGKILL, a CI time-out) cannot remove its cluster, and
in /dev/shm that holds memory until reboot: each folder made here names its owner (the test process) in a file, and
the next run stops the PostgreSQL of every folder whose owner is gone and removes the folder.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

SHM = Path("/dev/shm")
SHM_NEEDED_BYTES = 4 * 1024**3
OWNER_FILE = "lsd-test-owner"
STOP_WAIT_S = 10.0


def cluster_parent() -> str | None:
    """Where clusters go: $LSD_TEST_PG_DIR, else /dev/shm when it is a big enough tmpfs, else the system's temporary
    folder (None)."""
    chosen = os.environ.get("LSD_TEST_PG_DIR")
    if chosen:
        return chosen
    try:
        usage = shutil.disk_usage(SHM)
    except OSError:
        return None
    return str(SHM) if usage.free >= SHM_NEEDED_BYTES and os.access(SHM, os.W_OK) else None


def cluster_folder(prefix: str) -> Path:
    """A new folder for a cluster, owned by this process; abandoned ones in the same parent are removed first."""
    parent = cluster_parent()
    sweep_abandoned(Path(parent or tempfile.gettempdir()))
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    (folder / OWNER_FILE).write_text(f"{os.getpid()} {_start_time(os.getpid())}\n")
    return folder


def sweep_abandoned(parent: Path) -> list[Path]:
    """Stop the PostgreSQL of each folder under `parent` whose owner file names a process that is gone, and remove
    the folder. Folders without an owner file are not this module's and are left alone. Returns those removed."""
    removed: list[Path] = []
    try:
        owned = [entry for entry in parent.iterdir() if (entry / OWNER_FILE).is_file()]
    except OSError:
        return removed
    for folder in owned:
        try:
            pid_text, _, started = (folder / OWNER_FILE).read_text().strip().partition(" ")
            owner = int(pid_text)
        except (OSError, ValueError):
            continue
        if _start_time(owner) is not None and _start_time(owner) == (started or None):
            continue  # its owner runs
        for pidfile in folder.rglob("postmaster.pid"):
            _stop_postmaster(pidfile)
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), which tells a live owner from
    a new process that reused its pid; None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: count fields after its closing one.
    return stat.rsplit(")", 1)[1].split()[19]  # after the name: field 3 is [0], field 22 is [19]


def _stop_postmaster(pidfile: Path) -> None:
    """Stop the cluster whose postmaster.pid this is (an immediate shutdown: nothing in it is wanted)."""
    try:
        pid = int(pidfile.read_text().split("\n", 1)[0])
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    if b"postgres" not in command or str(pidfile.parent).encode() not in command:
        return  # not that cluster's postmaster (gone, its pid reused)
    try:
        os.kill(pid, signal.SIGQUIT)
    except OSError:
        return
    deadline = time.monotonic() + STOP_WAIT_S
    while time.monotonic() < deadline and _state(pid) not in (None, "Z"):  # a zombie has let go of its memory
        time.sleep(0.05)


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None
