"""Episodes stay with their variant in adaptive experiments, whose weights change: a request that continues an
episode runs the variant of the episode's first stored inference of the function, while that variant can still be
sampled (docs/experiments.md, "Choosing a variant")."""

from __future__ import annotations

from uuid import UUID

from lsd.config.model import FunctionConfig
from lsd.errors import DatabaseUnavailable
from lsd.ids import is_workflow_episode
from lsd.inference.experiment import experiment_of
from lsd.store.database import Database
from lsd.store.experiments import episode_variant


async def sticky_variant(
    database: Database | None, function: FunctionConfig, episode_id: UUID | None, namespace: str | None
) -> str | None:
    """The variant the episode already ran for `function`, when the function's experiment is adaptive and the
    request continues an episode (`episode_id` given); None otherwise, and when PostgreSQL does not answer in time
    (the request then samples as usual). Static experiments need no lookup: their weights do not move."""
    experiment = experiment_of(function, namespace)
    if database is None or episode_id is None or experiment is None or experiment.type != "adaptive":
        return None
    if episode_id.version != 7 or is_workflow_episode(episode_id):
        return None
    try:
        if function.type == "json":
            return await episode_variant(database, "json_inferences", function.name, episode_id)
        return await episode_variant(database, "chat_inferences", function.name, episode_id)
    except DatabaseUnavailable:
        return None
