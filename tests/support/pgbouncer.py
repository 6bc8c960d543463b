"""A real PgBouncer (Debian's `pgbouncer` package) in front of a test PostgreSQL, for the pooler tests."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from lsd.store.local import SERVICE_USER, find_bin_dir, free_port

BINARY = Path("/usr/sbin/pgbouncer")
INSTALL_HINT = "PgBouncer is missing: apt-get install -y pgbouncer (.ci/run installs it)"


class PgBouncer:
    """PgBouncer on a free port forwarding every database to `upstream_url`'s server, as `upstream_url`'s user.

    `pool_mode = transaction` with a small server pool, so that one client's consecutive transactions land on
    different server connections."""

    def __init__(self, upstream_url: str, *, pool_mode: str = "transaction", pool_size: int = 3) -> None:
        if not BINARY.exists():
            raise RuntimeError(INSTALL_HINT)
        self.upstream = conninfo_to_dict(upstream_url)
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="lsd-pgbouncer-"))
        self.pool_mode = pool_mode
        self.pool_size = pool_size
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, direct_url: str) -> str:
        """`direct_url` (same server, any database) as reached through this PgBouncer."""
        params = conninfo_to_dict(direct_url)
        params.update(host="127.0.0.1", port=str(self.port))
        return make_conninfo("", **params)

    def start(self) -> None:
        user = str(self.upstream.get("user") or "postgres")
        (self.folder / "users.txt").write_text(f'"{user}" ""\n')
        (self.folder / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host={self.upstream.get('host', '127.0.0.1')} port={self.upstream.get('port', 5432)} user={user}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = any\n"
            f"auth_file = {self.folder / 'users.txt'}\n"
            f"admin_users = {user}\n"
            f"pool_mode = {self.pool_mode}\n"
            f"default_pool_size = {self.pool_size}\n"
            "max_client_conn = 500\n"
            "ignore_startup_parameters = extra_float_digits\n"
            "stats_period = 1\n"
            f"logfile = {self.folder / 'pgbouncer.log'}\n"
        )
        # PgBouncer refuses to run as root: run it as the unprivileged user the local PostgreSQL runs as.
        run_as = SERVICE_USER if os.geteuid() == 0 else None
        if run_as:
            entry = pwd.getpwnam(run_as)
            self.folder.chmod(0o755)
            for path in [self.folder, *self.folder.iterdir()]:
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self.process = subprocess.Popen(
            [str(BINARY), str(self.folder / "pgbouncer.ini")],
            user=run_as,
            group=pwd.getpwnam(run_as).pw_gid if run_as else None,
            extra_groups=[] if run_as else None,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while True:
            try:
                with psycopg.connect(self.url(make_conninfo("", **{**self.upstream, "dbname": "postgres"}))) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"pgbouncer did not start:\n{self.log()}") from None
                time.sleep(0.05)

    def show(self, what: str) -> list[dict[str, str]]:
        """`SHOW <what>` on the admin console (simple query protocol only: through psql)."""
        psql = find_bin_dir() / "psql"
        user = str(self.upstream.get("user") or "postgres")
        out = subprocess.run(
            [str(psql), "-h", "127.0.0.1", "-p", str(self.port), "-U", user, "-d", "pgbouncer", "-AF", "\t"],
            input=f"SHOW {what};",
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.splitlines()
        header = out[0].split("\t")
        return [dict(zip(header, line.split("\t"), strict=False)) for line in out[1:] if "\t" in line]

    def log(self) -> str:
        path = self.folder / "pgbouncer.log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        shutil.rmtree(self.folder, ignore_errors=True)
