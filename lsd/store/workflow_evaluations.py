"""Workflow evaluation rows: runs (variant pins, tags), their episodes, and the feedback tied to a run."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from lsd.store.database import Database

Json = Any


@dataclass(frozen=True, slots=True)
class RunRow:
    id: UUID
    created_at: datetime
    variant_pins: dict[str, str]
    tags: dict[str, str]
    project_name: str | None
    display_name: str | None
    config_hash: str | None


@dataclass(frozen=True, slots=True)
class EpisodeRow:
    episode_id: UUID
    run_id: UUID
    created_at: datetime
    task_name: str | None
    tags: dict[str, str]


@dataclass(frozen=True, slots=True)
class EpisodeRun:
    """What an inference in a run's episode takes from it: the run's pins, and the run's tags overlaid with the
    episode's."""

    run_id: UUID
    variant_pins: dict[str, str]
    tags: dict[str, str]


@dataclass(frozen=True, slots=True)
class RunFeedbackRow:
    """A feedback row on one of a run's episodes or on an inference made in one."""

    id: UUID
    created_at: datetime
    episode_id: UUID
    target_id: UUID
    target_level: str  # inference | episode
    metric_name: str  # "comment" and "demonstration" for those
    value: Json
    tags: Json


_RUN_COLUMNS = "id, created_at, variant_pins, tags, project_name, display_name, config_hash"
_EPISODE_COLUMNS = "episode_id, run_id, created_at, task_name, tags"

# The episode is inserted only if its run exists: no row, no episode (the caller answers 404).
_INSERT_EPISODE = (
    f"INSERT INTO workflow_evaluation_episodes ({_EPISODE_COLUMNS}) "
    "SELECT %s, id, %s, %s, %s FROM workflow_evaluation_runs WHERE id = %s"
)

_EPISODE_RUN = (
    "SELECT r.id, r.variant_pins, r.tags || e.tags FROM workflow_evaluation_episodes e "
    "JOIN workflow_evaluation_runs r ON r.id = e.run_id WHERE e.episode_id = %s"
)

# Every target of a run's feedback: its episodes, and the inferences made in them (episode_id is indexed).
_RUN_FEEDBACK = """
WITH episodes AS (
    SELECT episode_id FROM workflow_evaluation_episodes WHERE run_id = %(run)s
), targets AS (
    SELECT episode_id AS target_id, episode_id FROM episodes
    UNION ALL SELECT id, episode_id FROM chat_inferences WHERE episode_id IN (SELECT episode_id FROM episodes)
    UNION ALL SELECT id, episode_id FROM json_inferences WHERE episode_id IN (SELECT episode_id FROM episodes)
)
SELECT f.id, f.created_at, t.episode_id, f.target_id, f.target_level, f.metric_name, to_jsonb(f.value) AS value,
       f.tags
FROM boolean_metric_feedback f JOIN targets t ON t.target_id = f.target_id
UNION ALL
SELECT f.id, f.created_at, t.episode_id, f.target_id, f.target_level, f.metric_name, to_jsonb(f.value), f.tags
FROM float_metric_feedback f JOIN targets t ON t.target_id = f.target_id
UNION ALL
SELECT f.id, f.created_at, t.episode_id, f.target_id, f.target_level, 'comment', to_jsonb(f.value), f.tags
FROM comment_feedback f JOIN targets t ON t.target_id = f.target_id
UNION ALL
SELECT f.id, f.created_at, t.episode_id, f.inference_id, 'inference', 'demonstration', f.value, f.tags
FROM demonstration_feedback f JOIN targets t ON t.target_id = f.inference_id
ORDER BY id
"""


async def insert_run(database: Database, run: RunRow) -> None:
    async with database.connection("workflow_evaluations") as conn:
        await conn.execute(
            f"INSERT INTO workflow_evaluation_runs ({_RUN_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (
                run.id,
                run.created_at,
                Jsonb(run.variant_pins),
                Jsonb(run.tags),
                run.project_name,
                run.display_name,
                run.config_hash,
            ),
        )


async def insert_episode(database: Database, episode: EpisodeRow) -> bool:
    """Insert the episode of an existing run; False (nothing written) when the run does not exist."""
    async with database.connection("workflow_evaluations") as conn:
        cur = await conn.execute(
            _INSERT_EPISODE,
            (episode.episode_id, episode.created_at, episode.task_name, Jsonb(episode.tags), episode.run_id),
        )
        return cur.rowcount == 1


async def episode_run(database: Database, episode_id: UUID) -> EpisodeRun | None:
    """The run of a workflow evaluation episode, read from the primary (the episode may be a moment old)."""
    async with database.connection("workflow_evaluations") as conn:
        cur = await conn.execute(_EPISODE_RUN, (episode_id,), prepare=database.prepare)
        row = await cur.fetchone()
    return EpisodeRun(row[0], row[1], row[2]) if row else None


async def episode_exists(database: Database, episode_id: UUID) -> bool:
    async with database.connection("feedback") as conn:
        cur = await conn.execute(
            "SELECT EXISTS (SELECT 1 FROM workflow_evaluation_episodes WHERE episode_id = %s)", (episode_id,)
        )
        row = await cur.fetchone()
    return bool(row and row[0])


async def get_run(database: Database, run_id: UUID) -> RunRow | None:
    async with database.reading("workflow_evaluations") as conn, conn.cursor(row_factory=class_row(RunRow)) as cur:
        await cur.execute(f"SELECT {_RUN_COLUMNS} FROM workflow_evaluation_runs WHERE id = %s", (run_id,))
        return await cur.fetchone()


async def run_episodes(database: Database, run_id: UUID) -> list[EpisodeRow]:
    async with (
        database.reading("workflow_evaluations") as conn,
        conn.cursor(row_factory=class_row(EpisodeRow)) as cur,
    ):
        await cur.execute(
            f"SELECT {_EPISODE_COLUMNS} FROM workflow_evaluation_episodes WHERE run_id = %s ORDER BY episode_id",
            (run_id,),
        )
        return await cur.fetchall()


async def run_feedback(database: Database, run_id: UUID) -> list[RunFeedbackRow]:
    """Metric, comment and demonstration feedback on the run's episodes and their inferences, oldest first."""
    async with (
        database.reading("workflow_evaluations") as conn,
        conn.cursor(row_factory=class_row(RunFeedbackRow)) as cur,
    ):
        await cur.execute(_RUN_FEEDBACK, {"run": run_id})
        return await cur.fetchall()
