"""`lsd spool status|replay|rejected|retry-rejected`: what the observability spool holds, replaying it now into
LSD_DATABASE_URL, and the rows PostgreSQL rejected (listing them, moving them back to be replayed after a fix).

The spool folder is `--dir`, else the `gateway.observability.spool_dir` of the config file (`--config`, default
LSD_CONFIG or config/lsd.toml), else `.lsd/spool` when there is no config file. With `--dir` and no `--config` no
config file is read (replay then uses the default database settings). `replay` goes through the same
writer a gateway uses (lsd.store.writer): the same idempotent COPY, the same checks of the database each file names,
the same handling of rejected rows; files a running gateway holds are left to it.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import fcntl
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from lsd.cli.options import Subparsers, add_config_argument, config_patterns, default_config
from lsd.config import load_many
from lsd.config.model import Config, ObservabilityConfig
from lsd.exits import EXIT_DATABASE, EXIT_OK
from lsd.startup import database_urls
from lsd.store.database import connect_with_retry, prepare_threshold
from lsd.store.journal import JOURNAL_DIR
from lsd.store.spool import FOREIGN_DIR, REJECTED_DIR, SUFFIX
from lsd.store.spool_format import MAX_HEADER, SpoolHeaderError, iter_frames, read_header
from lsd.store.spool_survey import Survey, survey
from lsd.store.writer import Writer

DEFAULT_REPLAY_TIMEOUT_S = 600.0


def add_parser(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("spool", help="the observability spool: what waits on disk, and replaying it")
    sub = p.add_subparsers(dest="spool_command", required=True, metavar="SUBCOMMAND")
    status = sub.add_parser("status", help="files, rows, bytes, oldest file, databases; foreign and rejected files")
    replay = sub.add_parser(
        "replay",
        help="replay the spool now into LSD_DATABASE_URL (files of another database are set aside)",
        description="Exit status: 0 nothing replayable is left, 3 PostgreSQL is unreachable or went away.",
    )
    rejected = sub.add_parser(
        "rejected",
        help="the groups of rows PostgreSQL rejected (kept in <spool_dir>/rejected/): file, time, tables, rows",
    )
    retry = sub.add_parser(
        "retry-rejected",
        help="move the rejected files back into the spool, to be replayed (after the cause is fixed)",
        description="Files a running gateway still writes to are left where they are. The moved files are "
        "replayed by a gateway using the spool (within a minute) or by `lsd spool replay`; rows still refused "
        "go back to rejected/.",
    )
    for command in (status, replay, rejected, retry):
        command.add_argument("--dir", type=Path, default=None, help="the spool folder (default: from the config)")
        add_config_argument(command, required_default=False, help="config files whose spool_dir to use")
    status.add_argument("--json", action="store_true", help="one JSON object")
    rejected.add_argument("--json", action="store_true", help="one JSON object per line, one line per file")
    replay.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_REPLAY_TIMEOUT_S,
        help=f"stop replaying after this many seconds (default {DEFAULT_REPLAY_TIMEOUT_S:g}); the rest stays spooled",
    )


def run(args: argparse.Namespace) -> int:
    config = _config(args.config) if args.config is not None or args.dir is None else None
    observability = config.gateway.observability if config else ObservabilityConfig(spool_dir=_default_dir())
    directory = (args.dir or observability.spool_dir).absolute()
    if args.spool_command == "status":
        return _status(directory, as_json=args.json)
    if args.spool_command == "rejected":
        return _rejected(directory / REJECTED_DIR, as_json=args.json)
    if args.spool_command == "retry-rejected":
        return _retry_rejected(directory)
    return _replay(directory, config, dataclasses.replace(observability, spool_dir=directory), args.timeout)


def _default_dir() -> Path:
    """The config loader's default spool_dir: relative to the working directory."""
    return Path.cwd() / ".lsd" / "spool"


def _config(patterns: list[str] | None) -> Config | None:
    """The config named by --config; else the default one when it exists; else none."""
    if patterns is None:
        patterns = config_patterns(None)
        if patterns == [default_config()] and not Path(patterns[0]).exists():
            return None
    return load_many(patterns)  # a ConfigError is reported by lsd.cli's error exit


# -- status ----------------------------------------------------------------------------------------------------


def _status(directory: Path, *, as_json: bool) -> int:
    folders = {
        "spool": survey(directory),
        "foreign": survey(directory / FOREIGN_DIR),
        "rejected": survey(directory / REJECTED_DIR),
        "journal": survey(directory / JOURNAL_DIR),
    }
    if as_json:
        sys.stdout.write(orjson.dumps({name: _json(found) for name, found in folders.items()}).decode() + "\n")
        return EXIT_OK
    titles = {
        "spool": "waiting to be replayed",
        "foreign": "of another database (not replayed here)",
        "rejected": "refused by PostgreSQL (never replayed)",
        "journal": "journaled (durability = \"journal\"): a running gateway's, or a crashed one's, which the next "
        "gateway start or `lsd spool replay` replays",
    }
    lines: list[str] = []
    for name, found in folders.items():
        lines.append(f"{found.directory}: {_summary(found)} {titles[name]}")
        for database, files in sorted(found.databases.items()):
            lines.append(f"  database {database}: {_files(files)}")
        if found.unreadable:
            lines.append(f"  unreadable (no valid header): {_files(found.unreadable)}")
        if found.torn_frames:
            lines.append(f"  torn frames (skipped on replay): {found.torn_frames}")
    sys.stdout.write("\n".join(lines) + "\n")
    return EXIT_OK


def _summary(found: Survey) -> str:
    text = f"{_files(found.files)}, {found.rows} rows, {found.bytes} bytes"
    if found.oldest is not None:
        age = (datetime.now(UTC) - found.oldest).total_seconds()
        text += f", oldest {found.oldest.isoformat(timespec='seconds')} ({age:.0f} s ago)"
    return text + ","


def _files(count: int) -> str:
    return f"{count} file" if count == 1 else f"{count} files"


def _json(found: Survey) -> dict[str, Any]:
    return {
        "directory": str(found.directory),
        "files": found.files,
        "rows": found.rows,
        "bytes": found.bytes,
        "oldest": None if found.oldest is None else found.oldest.isoformat(),
        "databases": dict(found.databases),
        "versions": {str(version): files for version, files in found.versions.items()},
        "unreadable_files": found.unreadable,
        "torn_frames": found.torn_frames,
    }


# -- rejected rows ---------------------------------------------------------------------------------------------


def _rejected_files(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.name.endswith(SUFFIX) and not p.name.startswith("."))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _describe(path: Path) -> dict[str, Any]:
    """One rejected file: its name, creation time, database, groups and rows per table (never the rows' values)."""
    data = path.read_bytes()
    found: dict[str, Any] = {"file": str(path), "created": _created(path), "bytes": len(data)}
    try:
        layout = read_header(data[:MAX_HEADER])
    except SpoolHeaderError as exc:
        return found | {"error": str(exc)}
    tables: dict[str, int] = {}
    groups = torn = 0
    for _, payload in iter_frames(data, layout.size):
        if payload is None:
            torn += 1
            continue
        groups += 1
        items = orjson.loads(payload)
        for item in items if isinstance(items, list) else ():
            if isinstance(item, list) and item and isinstance(item[0], str):
                tables[item[0]] = tables.get(item[0], 0) + 1
    database = None if layout.database is None else str(layout.database)
    return found | {"database": database, "groups": groups, "rows": tables, "torn_frames": torn}


def _created(path: Path) -> str:
    return datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(timespec="seconds")


def _rejected(folder: Path, *, as_json: bool) -> int:
    files = _rejected_files(folder)
    described = []
    for path in files:
        try:
            described.append(_describe(path))
        except (OSError, orjson.JSONDecodeError):
            continue  # moved or deleted meanwhile
    if as_json:
        sys.stdout.write("".join(orjson.dumps(d).decode() + "\n" for d in described))
        return EXIT_OK
    lines = [f"{folder}: {_files(len(described))} of rows PostgreSQL rejected (never replayed automatically)"]
    for d in described:
        if "error" in d:
            lines.append(f"  {d['file']}: unreadable ({d['error']})")
            continue
        rows = ", ".join(f"{table}: {count}" for table, count in sorted(d["rows"].items())) or "no rows"
        lines.append(f"  {d['file']}: written {d['created']}, {d['groups']} groups ({rows}), {d['bytes']} bytes")
    if described:
        lines.append("  after fixing the cause: lsd spool retry-rejected (then they are replayed)")
    sys.stdout.write("\n".join(lines) + "\n")
    return EXIT_OK


def _retry_rejected(directory: Path) -> int:
    """Move every rejected file no process holds back into `directory`, where it is replayed like any spool file."""
    moved = held = 0
    for path in _rejected_files(directory / REJECTED_DIR):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a gateway still appending to it holds this lock
        except OSError:
            held += 1
            os.close(fd)
            continue
        try:
            os.rename(path, directory / path.name)  # same name: the spool orders files by it (their creation time)
            moved += 1
        finally:
            os.close(fd)  # releases the lock: the file is an orphan, adopted by the next replay
    sys.stdout.write(
        f"moved {_files(moved)} from {directory / REJECTED_DIR} to {directory}; they are replayed by a gateway "
        f"using this spool (within a minute) or by `lsd spool replay`"
        + (f"; {_files(held)} still held by a running gateway, left in place" if held else "")
        + "\n"
    )
    return EXIT_OK


# -- replay ----------------------------------------------------------------------------------------------------


def _replay(directory: Path, config: Config | None, observability: ObservabilityConfig, timeout_s: float) -> int:
    url = database_urls().primary
    database = config.gateway.database if config else None
    # Fail at once, with the reason, when PostgreSQL does not answer (the writer would only log and back off).
    connect_with_retry(url, database.connect_timeout_s if database else 10.0).close()
    before = survey(directory).files + survey(directory / JOURNAL_DIR).files  # a crashed gateway's journal too
    observability = dataclasses.replace(
        observability, enabled=True, async_writes=True, shutdown_flush_timeout_s=timeout_s
    )
    threshold = prepare_threshold(database.prepared_statements if database else True)
    writer = Writer(url, observability, prepare_threshold=threshold)
    asyncio.run(_open_and_close(writer))
    after = survey(directory)
    stats = writer.stats
    written = sum(stats.written_rows.values())
    rejected = sum(stats.rejected_rows.values())
    sys.stdout.write(
        f"replayed {stats.replayed_rows} rows from {directory} into database {writer.database} "
        f"({written} written, {stats.replayed_rows - written - rejected} already there); "
        f"{rejected} rejected (kept in {directory / REJECTED_DIR}); "
        f"{_files(stats.spool_foreign_files)} of another database set aside; "
        f"{_files(after.files)} left of {before}\n"
    )
    if writer.unavailable and after.files:
        sys.stderr.write(f"lsd: PostgreSQL went away during the replay; {_files(after.files)} left in {directory}\n")
        return EXIT_DATABASE
    return EXIT_OK


async def _open_and_close(writer: Writer) -> None:
    """The writer replays what it adopts as soon as it is open, and `close()` lets it finish (until the timeout)."""
    await writer.open()
    await writer.close()
