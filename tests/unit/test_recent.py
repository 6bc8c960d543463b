"""RecentInferences: the last `capacity` inferences and their episodes, found by id, oldest forgotten first."""

from __future__ import annotations

import random
from uuid import UUID

import pytest

from lsd.ids import uuid7
from lsd.store.recent import MAX_NAMES, InferenceTarget, RecentInferences


def target(episode: UUID | None = None, function: str = "f", kind: str = "chat", variant: str = "v") -> InferenceTarget:
    return InferenceTarget(uuid7(), function, kind, variant, episode or uuid7())


def test_finds_what_it_was_given() -> None:
    recent = RecentInferences(capacity=100)
    a, b = target(function="chat", variant="gpt"), target(kind="json", variant="claude")
    recent.add(a)
    recent.add(b)
    assert recent.inference(a.inference_id) == a
    assert recent.inference(b.inference_id) == b
    assert recent.has_episode(a.episode_id) and recent.has_episode(b.episode_id)
    assert recent.inference(uuid7()) is None
    assert not recent.has_episode(uuid7())
    assert recent.inference(a.episode_id) is None  # an episode id is not an inference id


def test_forgets_the_oldest_past_capacity() -> None:
    recent = RecentInferences(capacity=1000)
    added = [target() for _ in range(5000)]
    for t in added:
        recent.add(t)
    assert all(recent.inference(t.inference_id) == t for t in added[-1000:])
    assert all(recent.has_episode(t.episode_id) for t in added[-1000:])
    assert not any(recent.inference(t.inference_id) for t in added[:-1000])
    assert not any(recent.has_episode(t.episode_id) for t in added[:-1000])


def test_an_episode_lives_as_long_as_its_latest_inference() -> None:
    recent = RecentInferences(capacity=10)
    episode = uuid7()
    recent.add(target(episode))
    for i in range(25):
        recent.add(target(episode if i % 5 == 0 else None))
    assert recent.has_episode(episode)  # its latest inference is among the last 10
    for _ in range(10):
        recent.add(target())
    assert not recent.has_episode(episode)


def test_colliding_and_client_chosen_ids() -> None:
    """Ids with equal low bits (a client may choose episode ids) land in one window: found while they fit."""
    recent = RecentInferences(capacity=50_000)
    episodes = [UUID(int=(i << 64) | 7) for i in range(40)]
    inferences = [target(episode) for episode in episodes]
    for t in inferences:
        recent.add(t)
    assert all(recent.has_episode(e) for e in episodes)
    assert all(recent.inference(t.inference_id) == t for t in inferences)


def test_random_churn_matches_a_plain_dict() -> None:
    rng = random.Random(7)
    recent = RecentInferences(capacity=300)
    added: list[InferenceTarget] = []
    episodes = [uuid7() for _ in range(50)]
    for _ in range(3000):
        t = target(rng.choice(episodes) if rng.random() < 0.5 else None, variant=rng.choice("abc"))
        recent.add(t)
        added.append(t)
    window = added[-300:]
    assert all(recent.inference(t.inference_id) == t for t in window)
    assert not any(recent.inference(t.inference_id) for t in added[:-300])
    assert {e for e in episodes if recent.has_episode(e)} == {t.episode_id for t in window} & set(episodes)


def test_names_are_bounded() -> None:
    recent = RecentInferences(capacity=10)
    recent._name_list.extend([("x", "chat", "y")] * (MAX_NAMES - 1))  # as if that many had been seen
    fits, past = target(variant="new"), target(variant="newer")
    recent.add(fits)
    recent.add(past)
    assert recent.inference(fits.inference_id) == fits
    assert recent.inference(past.inference_id) is None  # feedback asks the database instead


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity"):
        RecentInferences(capacity=0)
