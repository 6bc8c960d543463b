"""`[gateway.auth]`: API key checks and their in-process cache."""

from __future__ import annotations

from dataclasses import dataclass

from lsd.config.reader import Table


@dataclass(frozen=True, slots=True)
class AuthConfig:
    enabled: bool = False
    protect_metrics: bool = False  # true: /metrics needs a key too
    cache_enabled: bool = True
    cache_ttl_ms: int = 1000  # how long a verified key is trusted without asking PostgreSQL again


def auth_from(t: Table) -> AuthConfig:
    cache = t.table("cache")
    config = AuthConfig(
        enabled=t.bool("enabled", False),
        protect_metrics=t.bool("protect_metrics", False),
        cache_enabled=cache.bool("enabled", True),
        cache_ttl_ms=cache.int("ttl_ms", 1000, minimum=0),
    )
    cache.finish()
    t.finish()
    return config
