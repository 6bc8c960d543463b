"""Workflow evaluation runs (TensorZero's `/workflow_evaluation_run`): create runs and their episodes, apply a run to
the inferences of its episodes, and read a run back with the feedback tied to it.

A run pins a variant per function and carries tags. Its episodes get ids in the range reserved for them (a UUIDv7
10^10 s ahead, lsd.ids.workflow_episode_id), so an inference tells a run's episode from any other without a
lookup; only those are looked up. An inference in such an episode runs the run's pinned variant for its function
unless it names a variant itself, and takes the run's and the episode's tags where it has none of the same key —
among them `tensorzero::workflow_evaluation_run_id`, which ties its rows (and so its feedback) to the run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from uuid import UUID

from lsd.config.model import Config
from lsd.errors import InvalidRequest, NotFound
from lsd.ids import is_workflow_episode, timestamp_of, uuid7, workflow_episode_id
from lsd.inference.request import InferenceRequest
from lsd.store import workflow_evaluations as store
from lsd.store.database import Database
from lsd.store.workflow_evaluations import EpisodeRow, RunFeedbackRow, RunRow

RUN_ID_TAG = "tensorzero::workflow_evaluation_run_id"
LEGACY_RUN_ID_TAG = "tensorzero::dynamic_evaluation_run_id"  # its name before the rename; TensorZero writes both
RESERVED_TAG_PREFIXES = ("tensorzero::", "lsd::")


@dataclass(frozen=True, slots=True)
class RunRequest:
    variants: Mapping[str, str]  # function name -> variant name
    tags: Mapping[str, str] = field(default_factory=dict)
    project_name: str | None = None
    display_name: str | None = None
    internal: bool = False  # allows reserved tag keys


@dataclass(frozen=True, slots=True)
class EpisodeRequest:
    task_name: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RunDetail:
    run: RunRow
    episodes: list[EpisodeRow]
    feedback: list[RunFeedbackRow]


@dataclass(frozen=True, slots=True)
class WorkflowRuns:
    """Creates runs and episodes; the engine applies them to inferences through `apply_episode_run`."""

    config: Config
    database: Database

    async def create_run(self, request: RunRequest) -> UUID:
        """Check the pins against the config (unknown function 404, unknown variant 400) and store the run."""
        _check_tags(request.tags, "tags", allow_reserved=request.internal)
        for function_name, variant_name in request.variants.items():
            function = self.config.functions.get(function_name)
            if function is None:
                raise NotFound(f"Unknown function: {function_name}", field=f"variants.{function_name}")
            if variant_name not in function.variants:
                raise InvalidRequest.at(
                    f"variants.{function_name}", f"Variant {variant_name} for function {function_name} not found."
                )
        run_id = uuid7()
        await store.insert_run(
            self.database,
            RunRow(
                id=run_id,
                created_at=timestamp_of(run_id),
                variant_pins=dict(request.variants),
                tags=dict(request.tags),
                project_name=request.project_name,
                display_name=request.display_name,
                config_hash=self.config.source_hash,
            ),
        )
        return run_id

    async def create_episode(self, run_id: UUID, request: EpisodeRequest) -> UUID:
        """A new episode of the run (404 for an unknown run), tagged with the run's id."""
        _check_tags(request.tags, "tags", allow_reserved=False)
        episode_id = workflow_episode_id()
        tags = {**request.tags, RUN_ID_TAG: str(run_id), LEGACY_RUN_ID_TAG: str(run_id)}
        row = EpisodeRow(episode_id, run_id, timestamp_of(uuid7()), request.task_name, tags)
        if not await store.insert_episode(self.database, row):
            raise NotFound(f"unknown workflow evaluation run {run_id}", field="run_id")
        return episode_id

    async def detail(self, run_id: UUID) -> RunDetail:
        run = await store.get_run(self.database, run_id)
        if run is None:
            raise NotFound(f"unknown workflow evaluation run {run_id}", field="run_id")
        episodes = await store.run_episodes(self.database, run_id)
        return RunDetail(run, episodes, await store.run_feedback(self.database, run_id))


async def apply_episode_run(database: Database | None, request: InferenceRequest) -> InferenceRequest:
    """`request` as the run of its episode makes it (unchanged unless its episode is a run's): the run's pinned
    variant for the function when the request names none, and the run's and episode's tags under its own.

    Raises InvalidRequest (400, `episode_id`) when the id is in the workflow range but no run has that episode."""
    episode_id = request.episode_id
    if episode_id is None or not is_workflow_episode(episode_id):
        return request
    run = await store.episode_run(database, episode_id) if database is not None else None
    if run is None:
        raise InvalidRequest.at(
            "episode_id", f"Invalid Episode ID: {episode_id} is not an episode of a workflow evaluation run"
        )
    variant_name = request.variant_name
    if variant_name is None and request.dynamic_variant is None and request.function_name is not None:
        variant_name = run.variant_pins.get(request.function_name)
    return dataclasses.replace(request, variant_name=variant_name, tags={**run.tags, **request.tags})


def _check_tags(tags: Mapping[str, str], path: str, *, allow_reserved: bool) -> None:
    if allow_reserved:
        return
    for key in tags:
        if key.startswith(RESERVED_TAG_PREFIXES):
            raise InvalidRequest.at(f"{path}.{key}", "tag keys starting with 'tensorzero::' or 'lsd::' are reserved")
