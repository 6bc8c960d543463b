"""What a spool folder holds (files, rows, bytes, the databases they name, damaged frames), read without taking any
lock, for `lsd spool status`, `lsd doctor` and the writer's startup report."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

from lsd.ids import timestamp_of
from lsd.store.spool import SUFFIX
from lsd.store.spool_format import MAX_HEADER, SpoolHeaderError, count_rows, iter_frames, read_header


@dataclass(frozen=True, slots=True)
class Survey:
    """What one spool folder holds, read without taking any lock (a live writer may be appending)."""

    directory: Path
    files: int = 0
    rows: int = 0
    bytes: int = 0
    oldest: datetime | None = None  # when the oldest file was created
    databases: Mapping[str, int] = dataclasses.field(default_factory=dict)  # the database each file names: files
    versions: Mapping[int, int] = dataclasses.field(default_factory=dict)  # format version: files
    unreadable: int = 0  # files without a valid header (the writer renames them *.corrupt)
    torn_frames: int = 0


UNNAMED = "none named (replayed into any database)"


def survey(directory: Path) -> Survey:
    """The spool files directly in `directory` (not its subfolders); an empty Survey when it does not exist."""
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(SUFFIX) and not n.startswith("."))
    except (FileNotFoundError, NotADirectoryError):
        return Survey(directory)
    files = rows = size = unreadable = torn = 0
    oldest: datetime | None = None
    databases: dict[str, int] = {}
    versions: dict[int, int] = {}
    for name in names:
        try:
            data = (directory / name).read_bytes()
        except OSError:
            continue  # replayed and deleted meanwhile
        files, size = files + 1, size + len(data)
        created = _created(directory / name)
        oldest = created if oldest is None else min(oldest, created)
        try:
            layout = read_header(data[:MAX_HEADER])
        except SpoolHeaderError:
            unreadable += 1
            continue
        versions[layout.version] = versions.get(layout.version, 0) + 1
        database = UNNAMED if layout.database is None else str(layout.database)
        databases[database] = databases.get(database, 0) + 1
        for _, payload in iter_frames(data, layout.size):
            if payload is None:
                torn += 1
            else:
                rows += count_rows(payload)
    return Survey(directory, files, rows, size, oldest, databases, versions, unreadable, torn)


def _created(path: Path) -> datetime:
    """From the file's UUIDv7 name; its modification time for a name that is not one."""
    try:
        return timestamp_of(UUID(hex=path.name.removesuffix(SUFFIX)))
    except ValueError:
        try:
            return datetime.fromtimestamp(path.stat().st_mtime, UTC)
        except OSError:
            return datetime.now(UTC)
