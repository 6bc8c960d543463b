"""Start-up steps every `lsd` subcommand shares, each failure as a CommandExit with its exit status.

The database URLs from the environment, and the database prepared (migrated or checked, partitions, config
snapshot) as `lsd serve` does.
"""

from __future__ import annotations

from lsd.config.model import Config
from lsd.exits import EXIT_DATABASE, EXIT_MIGRATION, EXIT_USAGE, CommandExit
from lsd.runtime import prepare_database
from lsd.store.database import DatabaseUnreachable, DatabaseUrls
from lsd.store.migrate import MigrationError


def database_urls() -> DatabaseUrls:
    """LSD_DATABASE_URL (required) and the optional read and session URLs."""
    urls = DatabaseUrls.from_environ()
    if not urls.primary:
        raise CommandExit(EXIT_USAGE, "LSD_DATABASE_URL is not set: point it at PostgreSQL (postgresql://user@host/db)")
    return urls


def prepare(config: Config, urls: DatabaseUrls) -> list[str]:
    """Migrate (or check migrations), create partitions ahead, snapshot the config; the migrations applied."""
    try:
        return prepare_database(config, urls)
    except DatabaseUnreachable as exc:
        raise CommandExit(EXIT_DATABASE, str(exc)) from None
    except MigrationError as exc:
        raise CommandExit(EXIT_MIGRATION, str(exc)) from None
