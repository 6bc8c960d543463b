"""The JSON of workflow evaluation runs: TensorZero's request bodies parsed into typed requests, and the answers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from lsd.errors import InvalidRequest
from lsd.inference.workflow_runs import EpisodeRequest, RunDetail, RunRequest

# `internal` is TensorZero's flag for its own callers (reserved tag keys allowed).
_RUN_FIELDS = frozenset({"variants", "tags", "project_name", "display_name", "internal"})
_EPISODE_FIELDS = frozenset({"task_name", "tags"})


def parse_run_request(body: Any) -> RunRequest:
    """`POST /workflow_evaluation_run`: `{variants, tags?, project_name?, display_name?}`."""
    table = _object(body, "body")
    _no_unknown(table, _RUN_FIELDS)
    if table.get("variants") is None:
        raise InvalidRequest.at("variants", "missing required field: an object of function name to variant name")
    internal = table.get("internal")
    if internal is not None and not isinstance(internal, bool):
        raise InvalidRequest.at("internal", "expected a boolean")
    return RunRequest(
        variants=_strings(table["variants"], "variants"),
        tags=_strings(table.get("tags"), "tags"),
        project_name=_optional_str(table, "project_name"),
        display_name=_optional_str(table, "display_name"),
        internal=bool(internal),
    )


def parse_episode_request(body: Any) -> EpisodeRequest:
    """`POST /workflow_evaluation_run/{run_id}/episode`: `{task_name?, tags?}` (an empty body is `{}`)."""
    table = _object(body if body is not None else {}, "body")
    _no_unknown(table, _EPISODE_FIELDS)
    return EpisodeRequest(task_name=_optional_str(table, "task_name"), tags=_strings(table.get("tags"), "tags"))


def run_json(run_id: UUID) -> dict[str, str]:
    return {"run_id": str(run_id)}


def episode_json(episode_id: UUID) -> dict[str, str]:
    return {"episode_id": str(episode_id)}


def run_detail_json(detail: RunDetail) -> dict[str, Any]:
    """LSD's own read of a run: `{run, episodes, feedback}`."""
    run = detail.run
    return {
        "run": {
            "run_id": str(run.id),
            "created_at": run.created_at.isoformat(),
            "variants": run.variant_pins,
            "tags": run.tags,
            "project_name": run.project_name,
            "display_name": run.display_name,
        },
        "episodes": [
            {
                "episode_id": str(e.episode_id),
                "created_at": e.created_at.isoformat(),
                "task_name": e.task_name,
                "tags": e.tags,
            }
            for e in detail.episodes
        ],
        "feedback": [
            {
                "feedback_id": str(f.id),
                "created_at": f.created_at.isoformat(),
                "episode_id": str(f.episode_id),
                "target_id": str(f.target_id),
                "target_level": f.target_level,
                "metric_name": f.metric_name,
                "value": f.value,
                "tags": f.tags,
            }
            for f in detail.feedback
        ],
    }


def _object(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise InvalidRequest.at(path, "expected a JSON object")
    return value


def _no_unknown(table: Mapping[str, Any], known: frozenset[str]) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise InvalidRequest.at(unknown[0], "unknown field")


def _strings(value: Any, path: str) -> dict[str, str]:
    if value is None:
        return {}
    table = _object(value, path)
    for key, item in table.items():
        if not isinstance(item, str):
            raise InvalidRequest.at(f"{path}.{key}", "expected a string")
    return dict(table)


def _optional_str(table: Mapping[str, Any], key: str) -> str | None:
    value = table.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidRequest.at(key, "expected a string")
    return value
