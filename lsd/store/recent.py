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
    by the time one is evicted its rows have long been flushed (or spooled), so the database answers.

    Entries are kept as ints and tuples of strings: the garbage collector does not track those, so a full
    map adds nothing to collection pauses (UUID and dataclass objects would: 200k of them cost ~100 ms per full
    collection in `make bench`)."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._by_id: OrderedDict[int, tuple[str, str, str, int]] = OrderedDict()
        self._episodes: OrderedDict[int, None] = OrderedDict()

    def add(self, target: InferenceTarget) -> None:
        self._by_id[target.inference_id.int] = (
            target.function_name,
            target.function_type,
            target.variant_name,
            target.episode_id.int,
        )
        episode = target.episode_id.int
        self._episodes[episode] = None
        self._episodes.move_to_end(episode)
        while len(self._by_id) > self.capacity:
            self._by_id.popitem(last=False)
        while len(self._episodes) > self.capacity:
            self._episodes.popitem(last=False)

    def inference(self, inference_id: UUID) -> InferenceTarget | None:
        found = self._by_id.get(inference_id.int)
        if found is None:
            return None
        function_name, function_type, variant_name, episode = found
        return InferenceTarget(inference_id, function_name, function_type, variant_name, UUID(int=episode))

    def has_episode(self, episode_id: UUID) -> bool:
        return episode_id.int in self._episodes
