"""The clean-up of clusters that a killed test run left behind (tests.support.clusters)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from lsd.store.local import LocalServer
from tests.support.clusters import OWNER_FILE, cluster_folder, sweep_abandoned


def _alive(pidfile: Path) -> bool:
    pid = int(pidfile.read_text().split("\n", 1)[0])
    state = Path(f"/proc/{pid}/stat")
    return state.exists() and state.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def test_a_cluster_whose_owner_is_gone_is_stopped_and_removed_and_a_live_ones_stays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LSD_TEST_PG_DIR", str(tmp_path))
    abandoned, kept = cluster_folder("lsd-a-"), cluster_folder("lsd-b-")
    assert abandoned.parent == tmp_path
    assert (kept / OWNER_FILE).read_text().split()[0] == str(os.getpid())
    gone = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True, check=True)
    (abandoned / OWNER_FILE).write_text(f"{gone.stdout.strip()} 1\n")  # a process that has ended
    stranger = tmp_path / "not-ours"
    stranger.mkdir()
    server = LocalServer(abandoned, fast_unsafe=True)
    server.start()
    pidfile = abandoned / "data" / "postmaster.pid"
    try:
        assert _alive(pidfile)
        postmaster = pidfile.read_text()
        assert sweep_abandoned(tmp_path) == [abandoned]
        assert not abandoned.exists() and kept.exists() and stranger.exists()
        pid = int(postmaster.split("\n", 1)[0])
        stat = Path(f"/proc/{pid}/stat")
        assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"
        newer = cluster_folder("lsd-c-")  # each new folder sweeps first: the live owner's folder stays
        assert kept.exists() and newer.exists()
    finally:
        if abandoned.exists():
            server.stop()
