"""A TOML table reader that knows its key path, collects every error and rejects unknown keys."""

from __future__ import annotations

import builtins
import difflib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
_MISSING: Any = object()


class ErrorSink:
    """Collects config errors; each names the full key path."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}" if path else message)


class Origins:
    """Which file's folder each key of a merged config came from (several files: `lsd.config.files`).

    Keyed by the identity of the table (dict) holding the key: relative paths resolve against the folder of the file
    that wrote the key, wherever the table holding it was merged from."""

    def __init__(self) -> None:
        self._dirs: dict[int, dict[builtins.str, Path]] = {}

    def record(self, table: Mapping[builtins.str, Any], key: builtins.str, folder: Path) -> None:
        self._dirs.setdefault(id(table), {})[key] = folder

    def folder(self, table: Mapping[builtins.str, Any], key: builtins.str) -> Path | None:
        return self._dirs.get(id(table), {}).get(key)


class Table:
    """One TOML table being read. Call `finish()` after reading to report keys nobody asked for."""

    def __init__(
        self,
        data: Mapping[str, Any],
        path: builtins.str,
        sink: ErrorSink,
        base_dir: Path,
        origins: Origins | None = None,
    ) -> None:
        self.data = data
        self.path = path
        self.sink = sink
        self.base_dir = base_dir
        self.origins = origins
        self._seen: set[str] = set()

    def key_dir(self, key: builtins.str) -> Path:
        """The folder of the file that wrote `key` (relative paths in its value resolve against it)."""
        folder = self.origins.folder(self.data, key) if self.origins is not None else None
        return folder or self.base_dir

    def key_path(self, key: builtins.str) -> builtins.str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: builtins.str, message: builtins.str) -> None:
        self.sink.add(self.key_path(key) if key else self.path, message)

    def has(self, key: builtins.str) -> builtins.bool:
        return key in self.data

    def keys(self) -> list[str]:
        return list(self.data)

    def _get(
        self,
        key: builtins.str,
        kinds: tuple[type, ...],
        kind_name: builtins.str,
        default: Any,
        required: builtins.bool,
    ) -> Any:
        self._seen.add(key)
        if key not in self.data:
            if required:
                self.error(key, "missing required key")
            return default
        value = self.data[key]
        # bool is an int subclass: never accept it where a number is wanted, and vice versa.
        if isinstance(value, builtins.bool) and bool not in kinds:
            self.error(key, f"expected {kind_name}, got boolean")
            return default
        if not isinstance(value, kinds):
            self.error(key, f"expected {kind_name}, got {type(value).__name__}")
            return default
        return value

    def str(
        self,
        key: builtins.str,
        default: Any = None,
        *,
        required: builtins.bool = False,
        env: builtins.bool = True,
    ) -> Any:
        """A string; `env::NAME` is replaced by that environment variable at load (unless env=False)."""
        value = self._get(key, (str,), "a string", default, required)
        if env and isinstance(value, builtins.str) and value.startswith("env::"):
            name = value[5:]
            if name not in os.environ:
                self.error(key, f"environment variable {name} is not set")
                return default
            return os.environ[name]
        return value

    def choice(
        self,
        key: builtins.str,
        options: tuple[builtins.str, ...],
        default: Any = None,
        *,
        required: builtins.bool = False,
    ) -> Any:
        value = self.str(key, default, required=required)
        if value is not default and value not in options:
            self.error(key, f"must be one of {', '.join(repr(o) for o in options)}, got {value!r}")
            return default
        return value

    def bool(self, key: builtins.str, default: Any = None) -> Any:
        return self._get(key, (bool,), "a boolean", default, False)

    def int(self, key: builtins.str, default: Any = None, *, minimum: builtins.int | None = None) -> Any:
        value = self._get(key, (int,), "an integer", default, False)
        if minimum is not None and isinstance(value, builtins.int) and value < minimum and value is not default:
            self.error(key, f"must be >= {minimum}, got {value}")
            return default
        return value

    def float(self, key: builtins.str, default: Any = None, *, minimum: builtins.float | None = None) -> Any:
        value = self._get(key, (int, builtins.float), "a number", default, False)
        if value is not None and value is not default:
            value = float(value)
            if minimum is not None and value < minimum:
                self.error(key, f"must be >= {minimum}, got {value}")
                return default
        return value

    def str_list(self, key: builtins.str, default: Any = None, *, required: builtins.bool = False) -> Any:
        value = self._get(key, (list,), "a list of strings", default, required)
        if value is default:
            return default
        if not all(isinstance(v, builtins.str) for v in value):
            self.error(key, "expected a list of strings")
            return default
        return tuple(value)

    def path_value(self, key: builtins.str, default: Any = None, *, required: builtins.bool = False) -> Path | None:
        """A file path, resolved relative to the config file's folder."""
        value = self.str(key, default, required=required)
        if not isinstance(value, builtins.str):
            return None
        path = Path(value)
        return path if path.is_absolute() else (self.key_dir(key) / path).resolve()

    def raw(self, key: builtins.str, default: Any = None) -> Any:
        self._seen.add(key)
        return self.data.get(key, default)

    def table(self, key: builtins.str, *, required: builtins.bool = False) -> Table:
        value = self._get(key, (dict,), "a table", {}, required)
        return Table(value, self.key_path(key), self.sink, self.key_dir(key), self.origins)

    def subtables(self, key: builtins.str) -> Iterator[tuple[builtins.str, Table]]:
        """Each entry of a table of tables (e.g. `models.*`)."""
        parent = self.table(key)
        for name in parent.data:
            yield name, parent.table(name)

    def rest(self) -> dict[builtins.str, Any]:
        """Every key not read yet, marked as read (a plugin parses them)."""
        rest: dict[builtins.str, Any] = {k: v for k, v in self.data.items() if k not in self._seen}
        self._seen.update(rest)
        return rest

    def finish(self) -> None:
        for key in self.data:
            if key not in self._seen:
                hint = difflib.get_close_matches(key, sorted(self._seen), n=1)
                suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
                self.error(key, f"unknown key{suffix}")
