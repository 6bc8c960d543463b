"""Configuration: TOML parsed once into frozen, typed objects whose errors name the key path."""

from lsd.config.loader import load, load_many, parse
from lsd.config.model import (
    Config,
    FunctionConfig,
    GatewayConfig,
    ModelConfig,
    ProviderConfig,
    VariantConfig,
)
from lsd.config.reader import ErrorSink, Table

__all__ = [
    "Config",
    "ErrorSink",
    "FunctionConfig",
    "GatewayConfig",
    "ModelConfig",
    "ProviderConfig",
    "Table",
    "VariantConfig",
    "load",
    "load_many",
    "parse",
]
