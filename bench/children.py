"""The child processes of a benchmark run: each in its own session, all stopped on exit, Ctrl-C or error."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from bench import pinning
from bench.pinning import Pins

ROOT = Path(__file__).resolve().parents[1]


class ChildError(RuntimeError):
    """A child process exited early or did not become ready."""


@dataclass
class Child:
    """One process we started; its stdout and stderr go to `log_path`."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes] = field(repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]

    def check_alive(self) -> None:
        if not self.alive():
            raise ChildError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")


class Children:
    """Starts children and stops every one still running on close(), the latest first.

    A child runs in a session of its own, so a Ctrl-C in the terminal reaches only this process, which then
    stops the children in order (lsd gets SIGTERM and flushes its writer). A child that does not exit within
    its timeout is killed with its whole process group (hypercorn's worker processes included)."""

    def __init__(self, log_dir: Path, pins: Pins | None = None) -> None:
        self.log_dir = log_dir
        self.pins: Pins = pins or {}
        self._children: list[Child] = []

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> Child:
        """Start `argv` (under `taskset` when its role, by `name`, is pinned: see bench.pinning)."""
        log_path = self.log_dir / f"{name}.log"
        log = log_path.open("ab")  # append mode: the lines of several worker processes never overwrite each other
        process = subprocess.Popen(
            [*pinning.prefix(self.pins, pinning.role_of(name)), *argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        child = Child(name, process, log_path, log)
        self._children.append(child)
        return child

    def python(self, name: str, *args: str, env: dict[str, str] | None = None) -> Child:
        return self.start(name, [sys.executable, *args], env)

    def fake(self, name: str, module: str, *options: str) -> tuple[Child, str]:
        """One of bench's fake servers, `python -m <module> --url-file F <options>`, and the root URL it writes to F
        (an earlier fake's F, of the same name, is removed first: its URL would be read as this one's)."""
        url_file = self.log_dir / f"{name}.url"
        url_file.unlink(missing_ok=True)
        child = self.python(name, "-m", module, "--url-file", str(url_file), *options)
        return child, wait_for_file(url_file, child)

    def stop(self, child: Child, timeout_s: float = 30.0) -> int:
        """SIGTERM, wait up to `timeout_s`, then SIGKILL the process group. Returns the exit code."""
        if child.alive():
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGTERM)
            try:
                child.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                print(f"  {child.name} did not stop within {timeout_s:.0f} s: killing it")
        # Whatever is left in the child's own process group (workers of a killed parent) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)
        code = child.process.wait()
        child._log.close()
        if child in self._children:
            self._children.remove(child)
        return code

    def close(self) -> None:
        with shielded():
            while self._children:
                self.stop(self._children[-1], timeout_s=15.0)

    def __enter__(self) -> Children:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Ignore SIGINT and SIGTERM meanwhile: a second Ctrl-C must not cut the clean-up short (it is bounded)."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, signal.SIG_IGN)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def wait_for_file(path: Path, child: Child, timeout_s: float = 30.0) -> str:
    """The contents of `path` once the child has written it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and (text := path.read_text().strip()):
            return text
        child.check_alive()
        time.sleep(0.02)
    raise ChildError(f"{child.name} did not write {path} in {timeout_s:.0f} s:\n{child.log_tail()}")


def wait_for_http(url: str, child: Child, timeout_s: float = 60.0, *, any_status: bool = False) -> None:
    """Poll `url` with GET until it answers 200 (or, with `any_status`, anything at all)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        child.check_alive()
        try:
            with urllib.request.urlopen(url, timeout=1) as reply:
                if reply.status == 200:
                    return
        except urllib.error.HTTPError:
            if any_status:
                return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    raise ChildError(f"{child.name} did not answer {url} in {timeout_s:.0f} s:\n{child.log_tail()}")


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (from /proc/<pid>/task/*/children)."""
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError, ValueError):
            for child in (task / "children").read_text().split():
                pids.extend(process_tree(int(child)))
    return pids


def rss_kib(pid: int) -> int:
    """The resident set size of one process (VmRSS of /proc/<pid>/status), in KiB; 0 if it is gone."""
    return status_kib(pid, "VmRSS")


def peak_rss_kib(pid: int) -> int:
    """The highest resident set size the process has had (VmHWM, its high-water mark), in KiB; 0 if it is gone."""
    return status_kib(pid, "VmHWM")


def status_kib(pid: int, key: str) -> int:
    """A `kB` field of /proc/<pid>/status, in KiB; 0 if the process is gone."""
    prefix = key + ":"
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(prefix):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()[:200]
    except OSError:
        return ""
