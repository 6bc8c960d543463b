"""Inferences this process answered recently, so feedback can target them before their rows are committed."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from uuid import UUID

DEFAULT_CAPACITY = 200_000


@dataclass(frozen=True, slots=True)
class InferenceTarget:
    """What feedback needs to know about an inference."""

    inference_id: UUID
    function_name: str
    function_type: str
    variant_name: str
    episode_id: UUID


class RecentInferences:
    """A bounded, insertion-ordered map (oldest evicted first). Entries are added when rows are queued;
    by the time one is evicted its rows have long been flushed (or spooled), so the database answers."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._by_id: OrderedDict[UUID, InferenceTarget] = OrderedDict()
        self._episodes: OrderedDict[UUID, None] = OrderedDict()

    def add(self, target: InferenceTarget) -> None:
        self._by_id[target.inference_id] = target
        self._episodes[target.episode_id] = None
        self._episodes.move_to_end(target.episode_id)
        while len(self._by_id) > self.capacity:
            self._by_id.popitem(last=False)
        while len(self._episodes) > self.capacity:
            self._episodes.popitem(last=False)

    def inference(self, inference_id: UUID) -> InferenceTarget | None:
        return self._by_id.get(inference_id)

    def has_episode(self, episode_id: UUID) -> bool:
        return episode_id in self._episodes
