"""What several `lsd` commands share: the `--config` option (paths and globs, repeatable) and loading what it names."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

from lsd.config import load_many
from lsd.config.model import Config
from lsd.inference.models import ModelTable
from lsd.inference.templates import Templates

# A string: argparse._SubParsersAction is generic to the type checker only.
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

DEFAULT_CONFIG = "config/lsd.toml"


def default_config() -> str:
    """LSD_CONFIG, else config/lsd.toml. LSD_CONFIG may hold several paths or globs separated by os.pathsep."""
    return os.environ.get("LSD_CONFIG", DEFAULT_CONFIG)


def add_config_argument(parser: argparse.ArgumentParser, *, required_default: bool, help: str) -> None:
    """`--config PATH_OR_GLOB`, repeatable (TensorZero's `--config-file 'config/*.toml'`): the files are merged.
    Unset, it is None; `config_patterns` then gives the default when the command needs one."""
    default = f" (default {default_config()})" if required_default else ""
    parser.add_argument("--config", action="append", default=None, metavar="PATH_OR_GLOB", help=help + default)


def config_patterns(value: str | Sequence[str] | None) -> list[str]:
    """What `--config` (or LSD_CONFIG when it was not given) names, as a list of paths and globs."""
    if value is None:
        return default_config().split(os.pathsep)
    return [value] if isinstance(value, str) else list(value)


@dataclass(frozen=True, slots=True)
class Checked:
    """A config file loaded and checked as `lsd serve` checks it: providers parse their options, templates
    compile, schemas are valid."""

    config: Config
    models: ModelTable
    templates: Templates


def load_checked(patterns: str | Sequence[str] | None) -> Checked:
    """Load and check the files `patterns` name (None: the default); raises ConfigError naming every problem (the
    CLI's error exit reports it)."""
    config = load_many(config_patterns(patterns))
    models = ModelTable.from_config(config)  # providers validate their own keys
    ModelTable.embeddings_from_config(config)
    return Checked(config, models, Templates(config))
