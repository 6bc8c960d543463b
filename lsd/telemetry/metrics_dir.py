"""The folder `lsd serve --workers N` shares between its workers' Prometheus values (PROMETHEUS_MULTIPROC_DIR).

The folder's life (made, emptied of a previous run's files, removed), apart from the metrics themselves
(lsd.telemetry.metrics): the supervisor sets the variable before it starts the workers, which pick their value class
when they first import prometheus-client.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def configured_multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def prepare_multiprocess_dir(configured: str | None) -> tuple[Path, bool]:
    """The folder the workers write to, emptied of a previous run's files: `configured` (the operator's
    PROMETHEUS_MULTIPROC_DIR) or a new temporary one. Returns it and whether it is ours to remove."""
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        return path, False
    return Path(tempfile.mkdtemp(prefix="lsd-metrics-")), True


def remove_multiprocess_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
