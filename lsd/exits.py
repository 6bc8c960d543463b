"""The `lsd` command line's shared exit statuses, and the one exception that ends a subcommand with one."""

from __future__ import annotations

EXIT_OK = 0
EXIT_CONFIG = 1
EXIT_USAGE = 2
EXIT_DATABASE = 3
EXIT_MIGRATION = 4


class CommandExit(Exception):
    """Raised by a subcommand; its entry point writes `lsd: <message>` to stderr and exits with `code`."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
