"""Inferences this process answered recently, so feedback can target them before their rows are committed."""

from __future__ import annotations

import mmap
from dataclasses import dataclass
from typing import Literal
from uuid import UUID

DEFAULT_CAPACITY = 200_000
MAX_PROBE = 64  # slots an insert or a lookup looks at; at most half the slots are live, so a full window is rare
MAX_NAMES = 1 << 16  # distinct (function, type, variant) triples remembered; an inference with a new one past it is not


@dataclass(frozen=True, slots=True)
class InferenceTarget:
    """What feedback needs to know about an inference."""

    inference_id: UUID
    function_name: str
    function_type: str
    variant_name: str
    episode_id: UUID


def _zeroed(size: int, fmt: Literal["B", "H", "I"]) -> memoryview[int]:
    """An array of zeros in an anonymous mapping: its pages take no memory until they are written."""
    return memoryview(mmap.mmap(-1, size)).cast(fmt)


class RecentInferences:
    """The last `capacity` inferences (oldest forgotten first) and their episodes, held in flat arrays.

    A ring holds each inference's id, episode id and names (42 bytes); two open-addressing tables of ring slots
    (4 bytes, at least twice `capacity` of them) find an inference by id and an episode by id. Nothing per
    inference is a Python object: a full map of 200,000 costs ~12 MiB of RSS (OrderedDicts of ints and tuples: ~60),
    the garbage collector never looks at it, and it pins no allocator arenas after a burst of load.

    By the time an entry is overwritten its rows have long been flushed (or spooled), so the database answers.
    An inference whose table window is full of live entries (vanishingly rare) or that brings the 65,537th
    distinct names is not remembered: feedback then finds it in the database, as any other replica does."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if not 1 <= capacity < 1 << 30:
            raise ValueError(f"capacity must be from 1 to 2**30 - 1, got {capacity}")
        self.capacity = capacity
        slots = 1 << max(4, (2 * capacity - 1).bit_length())
        self._mask = slots - 1
        self._next = 0  # ring slot the next inference goes to
        self._ids = _zeroed(16 * capacity, "B")
        self._episodes = _zeroed(16 * capacity, "B")
        self._names = _zeroed(2 * capacity, "H")
        self._id_at = _zeroed(4 * capacity, "I")  # where each ring slot's id sits in _by_id
        self._episode_at = _zeroed(4 * capacity, "I")  # where each ring slot's episode sits in _by_episode
        self._by_id = _zeroed(4 * slots, "I")  # ring slot + 1; 0 = never used
        self._by_episode = _zeroed(4 * slots, "I")
        self._name_index: dict[tuple[str, str, str], int] = {}
        self._name_list: list[tuple[str, str, str]] = []

    def add(self, target: InferenceTarget) -> None:
        names = (target.function_name, target.function_type, target.variant_name)
        name = self._name_index.get(names)
        if name is None:
            if len(self._name_list) >= MAX_NAMES:
                return
            name = self._name_index[names] = len(self._name_list)
            self._name_list.append(names)
        ring = self._next
        self._next = ring + 1 if ring + 1 < self.capacity else 0
        # The slot's previous inference is forgotten now: its table entries go stale (their *_at no longer match).
        self._id_at[ring] = self._episode_at[ring] = self._mask + 1
        self._names[ring] = name
        self._ids[16 * ring : 16 * ring + 16] = target.inference_id.bytes
        episode = target.episode_id.bytes
        self._episodes[16 * ring : 16 * ring + 16] = episode
        at = self._free_slot(self._by_id, self._id_at, target.inference_id, None)
        if at is not None:
            self._by_id[at] = ring + 1
            self._id_at[ring] = at
        at = self._free_slot(self._by_episode, self._episode_at, target.episode_id, episode)
        if at is not None:
            self._by_episode[at] = ring + 1
            self._episode_at[ring] = at

    def inference(self, inference_id: UUID) -> InferenceTarget | None:
        ring = self._find(self._by_id, self._ids, inference_id)
        if ring is None:
            return None
        function_name, function_type, variant_name = self._name_list[self._names[ring]]
        episode = UUID(bytes=bytes(self._episodes[16 * ring : 16 * ring + 16]))
        return InferenceTarget(inference_id, function_name, function_type, variant_name, episode)

    def has_episode(self, episode_id: UUID) -> bool:
        return self._find(self._by_episode, self._episodes, episode_id) is not None

    def _free_slot(self, table: memoryview[int], at: memoryview[int], key: UUID, same: bytes | None) -> int | None:
        """The table slot for `key`: the first unused or stale one in its window, or, when `same` is given (an
        episode), the one already holding it, refreshed. None when the window is full of live entries."""
        mask = self._mask
        slot = hash(key.int) & mask
        free = None
        for _ in range(MAX_PROBE):
            entry = table[slot]
            if entry == 0:
                return slot if free is None else free
            ring = entry - 1
            if at[ring] != slot:  # stale: the ring slot it names holds another inference now
                if free is None:
                    free = slot
            elif same is not None and self._episodes[16 * ring : 16 * ring + 16] == same:
                at[ring] = mask + 1  # the older inference no longer owns the slot; the new one takes it
                return slot
            slot = (slot + 1) & mask
        return free

    def _find(self, table: memoryview[int], keys: memoryview[int], key: UUID) -> int | None:
        """The ring slot holding `key`, or None. Unused slots are never reused as such (only stale ones are), so a
        lookup can stop at the first one."""
        wanted = key.bytes
        mask = self._mask
        slot = hash(key.int) & mask
        for _ in range(MAX_PROBE):
            entry = table[slot]
            if entry == 0:
                return None
            ring = entry - 1
            if keys[16 * ring : 16 * ring + 16] == wanted:
                return ring
            slot = (slot + 1) & mask
        return None
