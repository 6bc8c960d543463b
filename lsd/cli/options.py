"""What several `lsd` commands share: the `--config` option's default and loading the config file it names."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import TypeAlias

from lsd.config import load
from lsd.config.model import Config
from lsd.inference.models import ModelTable
from lsd.inference.templates import Templates

# A string: argparse._SubParsersAction is generic to the type checker only.
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

DEFAULT_CONFIG = "config/lsd.toml"


def default_config() -> str:
    """LSD_CONFIG, else config/lsd.toml."""
    return os.environ.get("LSD_CONFIG", DEFAULT_CONFIG)


@dataclass(frozen=True, slots=True)
class Checked:
    """A config file loaded and checked as `lsd serve` checks it: providers parse their options, templates
    compile, schemas are valid."""

    config: Config
    models: ModelTable
    templates: Templates


def load_checked(path: str) -> Checked:
    """Load and check `path`; raises ConfigError naming every problem (the CLI's error exit reports it)."""
    config = load(path)
    models = ModelTable.from_config(config)  # providers validate their own keys
    ModelTable.embeddings_from_config(config)
    return Checked(config, models, Templates(config))
