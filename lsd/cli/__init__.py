"""The `lsd` command line: the table of commands (one module per command group) and the one error exit.

A command group's module gives `add_parser(subparsers)` and `run(args) -> exit status`. A command raises
CommandExit for a failure it words itself; every other failure a user can cause (an invalid config, an unreachable
database, a migration conflict, a request the engine refuses) is turned into `lsd: <message>` on stderr and an exit
status here, in `exit_status`, and nowhere else.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType

from lsd import __version__
from lsd.cli import (
    batch,
    config,
    datasets,
    dicl,
    doctor,
    evaluate,
    experiments,
    export,
    importer,
    keys,
    localdb,
    migrate,
    serve,
    spool,
    stats,
    status,
)
from lsd.cli.options import Subparsers
from lsd.errors import ConfigError, LsdError
from lsd.exits import EXIT_CONFIG, EXIT_DATABASE, EXIT_MIGRATION, EXIT_USAGE, CommandExit
from lsd.store.database import DatabaseUnreachable
from lsd.store.keys import NotMigrated
from lsd.store.local import LocalServerError
from lsd.store.migrate import MigrationError
from lsd.telemetry import logging as lsd_logging

__all__ = ["COMMANDS", "Command", "exit_status", "main", "parser"]

EXIT_FAILED = 1  # the engine failed the request (a provider, a batch)
EXIT_INTERRUPTED = 130


@dataclass(frozen=True, slots=True)
class Command:
    add_parser: Callable[[Subparsers], object]
    run: Callable[[argparse.Namespace], int]
    interrupted: str | None = None  # said on Ctrl-C (exit 130); None: Python's own KeyboardInterrupt


# In the order `lsd --help` lists them.
COMMANDS = MappingProxyType(
    {
        "serve": Command(serve.add_parser, serve.run),
        "migrate": Command(migrate.add_parser, migrate.run),
        "config": Command(config.add_parser, config.run),
        "doctor": Command(doctor.add_parser, doctor.run),
        "stats": Command(stats.add_parser, stats.run),
        "evaluate": Command(evaluate.add_parser, evaluate.run, "interrupted; the run is marked failed"),
        "datasets": Command(datasets.add_parser, datasets.run),
        "export": Command(export.add_parser, export.run),
        "experiments": Command(experiments.add_parser, experiments.run),
        "dicl": Command(dicl.add_parser, dicl.run),
        "keys": Command(keys.add_parser, keys.run),
        "batch": Command(batch.add_parser, batch.run, "interrupted (the batch goes on; `lsd batch wait` picks it up)"),
        "localdb": Command(localdb.add_parser, localdb.run),
        "spool": Command(spool.add_parser, spool.run),
        "status": Command(status.add_parser, status.run),
        "import": Command(importer.add_parser, importer.run, "interrupted; a rerun skips the rows already written"),
    }
)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="lsd", description="LSD, the LLM Service Daemon")
    root.add_argument("--version", action="version", version=f"lsd {__version__}")
    sub = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS.values():
        command.add_parser(sub)
    return root


def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit status."""
    args = parser().parse_args(argv)
    command = COMMANDS[args.command]
    try:
        lsd_logging.configure()
        return command.run(args)
    except KeyboardInterrupt:
        if command.interrupted is None:
            raise
        sys.stderr.write(f"lsd: {command.interrupted}\n")
        return EXIT_INTERRUPTED
    except (CommandExit, LsdError, DatabaseUnreachable, NotMigrated, MigrationError, LocalServerError) as exc:
        code, message = exit_status(exc)
        sys.stderr.write(f"lsd: {message}\n")
        return code


def exit_status(exc: Exception) -> tuple[int, str]:
    """The exit status and message for a command's failure."""
    if isinstance(exc, CommandExit):
        return exc.code, exc.message
    if isinstance(exc, ConfigError):
        return EXIT_CONFIG, "invalid config:\n  " + "\n  ".join(exc.errors)
    if isinstance(exc, LsdError):
        return (EXIT_USAGE if exc.http_status < 500 else EXIT_FAILED), exc.message
    if isinstance(exc, MigrationError):
        return EXIT_MIGRATION, str(exc)
    return EXIT_DATABASE, str(exc)  # DatabaseUnreachable, NotMigrated, LocalServerError
