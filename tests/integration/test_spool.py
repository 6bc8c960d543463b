"""Spool files across upgrades and databases: an older LSD's files are replayed (the columns they lack take their
defaults), a file of another database is set aside and never replayed, and `lsd spool status|replay` for operators."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from lsd.api.status import ABSENT_STORES
from lsd.ids import uuid7
from lsd.records import Record
from lsd.store.journal import JOURNAL_DIR
from lsd.store.local import free_port
from lsd.store.spool import DatabaseIdentity, Spool
from lsd.store.spool_format import (
    CURRENT_COLUMNS,
    HEADER_V1,
    MAGIC,
    V1_COLUMNS,
    encode_frame,
    encode_payload,
    read_header,
)
from lsd.store.spool_survey import survey
from lsd.store.writer import Writer
from tests.integration.test_writer import chat_ids, eventually, ids_of, inference, inferences, observability
from tests.support.configs import echo_chat
from tests.support.gateway import in_process_gateway, run_lsd

Group = list[Record]


def identity_of(database_url: str) -> DatabaseIdentity:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT system_identifier::text, current_database() FROM pg_control_system()").fetchone()
    assert row is not None
    return DatabaseIdentity(row[0], row[1])


def older_file(
    directory: Path,
    groups: list[Group],
    *,
    database: DatabaseIdentity | None,
    drop: dict[str, str] | None = None,
    add: dict[str, tuple[str, Any]] | None = None,
) -> Path:
    """A version 2 file as another LSD version would write it: `drop` a column from a table, or `add` one."""
    drop, add = drop or {}, add or {}
    columns = {table: list(names) for table, names in CURRENT_COLUMNS.items()}
    frames = []
    for group in groups:
        rows = orjson.loads(encode_frame(group)[8:])
        for row in rows:
            table = row[0]
            if table in drop:
                del row[1 + CURRENT_COLUMNS[table].index(drop[table])]
            if table in add:
                row.append(add[table][1])
        frames.append(encode_payload(rows))
    for table, column in drop.items():
        columns[table].remove(column)
    for table, (column, _) in add.items():
        columns[table].append(column)
    body = {"database": None if database is None else database.to_json(), "tables": columns}
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{uuid7().hex}.spool"
    path.write_bytes(MAGIC + b"2 " + orjson.dumps(body) + b"\n" + b"".join(frames))
    return path


def v1_file(directory: Path, groups: list[Group]) -> Path:
    """A file as the releases before the format version 2 wrote it: the fixed header, no database, no columns
    (each row holds the V1_COLUMNS only: the columns added since are dropped)."""
    frames = []
    for group in groups:
        rows = orjson.loads(encode_frame(group)[8:])
        kept = [
            [row[0], *(row[1 + CURRENT_COLUMNS[row[0]].index(name)] for name in V1_COLUMNS[row[0]])] for row in rows
        ]
        frames.append(encode_payload(kept))
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{uuid7().hex}.spool"
    path.write_bytes(HEADER_V1 + b"".join(frames))
    return path


async def replay(database_url: str, directory: Path) -> Writer:
    writer = Writer(database_url, observability(directory))
    await writer.open()
    try:
        await eventually(lambda: not list(directory.glob("*.spool")))
    finally:
        await writer.close()
    return writer


def column(database_url: str, name: str, table: str = "chat_inferences") -> dict[Any, Any]:
    with psycopg.connect(database_url) as conn:
        query = f"SELECT id, {name} FROM {table}"  # test-only: fixed names
        return dict(conn.execute(query).fetchall())  # type: ignore[arg-type]


# -- upgrades ----------------------------------------------------------------------------------------------------


async def test_a_spool_written_with_one_column_fewer_is_replayed_with_its_default(
    database_url: str, tmp_path: Path
) -> None:
    groups = inferences(5)
    older_file(tmp_path, groups, database=identity_of(database_url), drop={"chat_inferences": "config_hash"})
    writer = await replay(database_url, tmp_path)
    assert set(chat_ids(database_url)) == ids_of(groups)
    assert set(column(database_url, "config_hash").values()) == {None}  # the column's default
    assert set(column(database_url, "function_name").values()) == {"chat"}  # the other columns as written
    assert writer.stats.replayed_rows == 10
    assert writer.stats.spool_torn_frames == 0


async def test_a_spool_with_a_column_this_version_does_not_know_is_replayed_without_it(
    database_url: str, tmp_path: Path
) -> None:
    groups = inferences(3)
    older_file(tmp_path, groups, database=None, add={"model_inferences": ("a_future_column", 42)})
    await replay(database_url, tmp_path)
    assert set(chat_ids(database_url)) == ids_of(groups)
    assert len(column(database_url, "status", "model_inferences")) == 3


async def test_a_spool_in_the_format_before_versions_is_replayed(database_url: str, tmp_path: Path) -> None:
    groups = inferences(4)
    path = v1_file(tmp_path, groups)
    layout = read_header(path.read_bytes())
    assert (layout.version, layout.database, layout.size) == (1, None, len(HEADER_V1))
    assert {t: c.columns for t, c in layout.codecs.items()} == dict(V1_COLUMNS)
    writer = await replay(database_url, tmp_path)
    assert set(chat_ids(database_url)) == ids_of(groups)
    assert set(column(database_url, "config_hash").values()) == {"abc"}
    assert writer.stats.replayed_rows == 8


def test_new_files_name_the_format_version_the_database_and_the_columns(tmp_path: Path) -> None:
    database = DatabaseIdentity("7311411429873051935", "lsd")
    spool = Spool(tmp_path, 1 << 20, identity=database)
    assert spool.append([encode_frame(inference())]) == (1, None)
    spool.close()
    [path] = tmp_path.glob("*.spool")
    layout = read_header(path.read_bytes())
    assert (layout.version, layout.database) == (2, database)
    assert {t: c.columns for t, c in layout.codecs.items()} == dict(CURRENT_COLUMNS)
    found = survey(tmp_path)
    assert (found.files, found.rows, found.bytes) == (1, 2, path.stat().st_size)
    assert found.databases == {str(database): 1}


# -- another database --------------------------------------------------------------------------------------------


async def test_a_spool_of_another_database_is_set_aside_and_never_replayed(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    here = identity_of(database_url)
    other_system = older_file(tmp_path, inferences(2), database=DatabaseIdentity("1234567890", here.name))
    other_name = older_file(tmp_path, inferences(2), database=DatabaseIdentity(here.system_identifier, "elsewhere"))
    ours = inferences(3)
    older_file(tmp_path, ours, database=here)
    unnamed = inferences(1)
    v1_file(tmp_path, unnamed)  # names no database: replayed into the one the writer reaches
    with caplog.at_level(logging.ERROR, logger="lsd.spool"):
        writer = await replay(database_url, tmp_path)
    assert set(chat_ids(database_url)) == ids_of(ours + unnamed)
    assert sorted(p.name for p in (tmp_path / "foreign").iterdir()) == sorted([other_system.name, other_name.name])
    assert writer.stats.spool_foreign_files == 2
    assert writer.database == here
    logged = [r.getMessage() for r in caplog.records if "was written for database" in r.getMessage()]
    assert len(logged) == 2 and "not replayed" in logged[0] and "foreign" in logged[0]

    # A restart does not look at them again; replaying the foreign folder into this database leaves them there.
    await replay(database_url, tmp_path)
    writer = Writer(database_url, observability(tmp_path / "foreign"))
    await writer.open()
    await writer.close()
    assert len(list((tmp_path / "foreign").glob("*.spool"))) == 2
    assert len(chat_ids(database_url)) == 4


# -- lsd spool status | replay --------------------------------------------------------------------------------------


async def test_lsd_spool_status_and_replay(database_url: str, tmp_path: Path) -> None:
    here = identity_of(database_url)
    spool = tmp_path / "spool"
    groups = inferences(3)
    older_file(spool, groups, database=here, drop={"chat_inferences": "api_key_public_id"})
    v1_file(spool, inferences(1))
    older_file(spool / "foreign", inferences(2), database=DatabaseIdentity("1", "elsewhere"))
    v1_file(spool / "rejected", [inference()])
    v1_file(spool / JOURNAL_DIR, inferences(1))  # a crashed durability = "journal" gateway's

    status = await asyncio.to_thread(run_lsd, "spool", "status", "--dir", str(spool))
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert lines[0].startswith(f"{spool}: 2 files, 8 rows, ")
    assert "oldest " in lines[0] and lines[0].endswith("waiting to be replayed")
    assert f"  database {here}: 1 file" in lines
    assert any(line.startswith(f"{spool / 'foreign'}: 1 file, 4 rows") for line in lines)
    assert any(line.startswith(f"{spool / 'rejected'}: 1 file, 2 rows") for line in lines)
    assert any(line.startswith(f"{spool / JOURNAL_DIR}: 1 file, 2 rows") for line in lines)

    status = await asyncio.to_thread(run_lsd, "spool", "status", "--dir", str(spool), "--json")
    report = orjson.loads(status.stdout)
    assert (report["spool"]["files"], report["spool"]["rows"]) == (2, 8)
    assert report["spool"]["versions"] == {"1": 1, "2": 1}
    assert report["foreign"]["databases"] == {str(DatabaseIdentity("1", "elsewhere")): 1}
    assert report["rejected"]["files"] == 1
    assert report["journal"]["files"] == 1

    env = {"LSD_DATABASE_URL": database_url}
    replayed = await asyncio.to_thread(run_lsd, "spool", "replay", "--dir", str(spool), env=env)
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.startswith(f"replayed 10 rows from {spool} into database {here} (10 written")
    assert "0 files left of 3" in replayed.stdout
    assert len(chat_ids(database_url)) == 5
    assert survey(spool).files == 0 and survey(spool / JOURNAL_DIR).files == 0
    assert survey(spool / "foreign").files == 1  # never replayed into the wrong database
    assert survey(spool / "rejected").files == 1  # for an operator, never replayed


async def test_lsd_spool_replay_without_the_database_keeps_the_files(tmp_path: Path) -> None:
    v1_file(tmp_path, inferences(2))
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    result = await asyncio.to_thread(
        run_lsd, "spool", "replay", "--dir", str(tmp_path), env={"LSD_DATABASE_URL": nowhere}
    )
    assert result.returncode == 3
    assert "cannot reach PostgreSQL" in result.stderr
    assert survey(tmp_path).files == 1


# -- lsd status -----------------------------------------------------------------------------------------------------


async def test_lsd_status_asks_a_running_gateway(database_url: str) -> None:
    async with in_process_gateway(echo_chat(), database_url) as base_url:
        result = await asyncio.to_thread(run_lsd, "status", "--url", base_url)
        as_json = await asyncio.to_thread(run_lsd, "status", "--url", base_url, "--json")
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()
    assert first.startswith(f"gateway {base_url}: ok, lsd ")
    assert second == "postgres: ok"
    assert orjson.loads(as_json.stdout)["health"] == {"gateway": "ok", "postgres": "ok", **ABSENT_STORES}

    gone = await asyncio.to_thread(run_lsd, "status", "--url", f"http://127.0.0.1:{free_port()}")
    assert gone.returncode == 6
    assert gone.stderr.startswith("lsd: no answer from http://127.0.0.1:")
