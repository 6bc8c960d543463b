"""Config files: expand `--config` globs, read each TOML file, merge them as TensorZero does (no key twice).

A table may be spread over several files (`[functions.a]` in one, `[functions.b]` in another), but any key holding a
value (a string, a number, a list, or a table in one file and a value in the other) defined by two files is an error
naming both. Each key remembers the folder of the file that wrote it, so relative paths resolve against that file.
"""

from __future__ import annotations

import glob
import hashlib
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsd.config.reader import Origins
from lsd.errors import ConfigError

_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")
_GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass(frozen=True, slots=True)
class SourceFile:
    path: Path
    text: str


@dataclass(frozen=True, slots=True)
class Sources:
    """What several files merged into: one TOML document, where each key came from, and the snapshot text."""

    data: dict[str, Any]
    origins: Origins
    files: tuple[SourceFile, ...]

    @property
    def text(self) -> str:
        """The snapshot: one file's text as it is; several files each under a header naming it, in load order."""
        if len(self.files) == 1:
            return self.files[0].text
        return "".join(f"# ---- lsd config file: {f.path} ----\n{f.text}\n" for f in self.files)

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def expand(patterns: Iterable[str]) -> tuple[Path, ...]:
    """Every file the patterns name, each once, a glob's matches sorted; a pattern matching nothing is an error."""
    found: list[Path] = []
    errors: list[str] = []
    for pattern in patterns:
        if _GLOB_CHARS.search(pattern):
            matches = sorted(Path(m) for m in glob.glob(pattern, recursive=True) if Path(m).is_file())
            if not matches:
                errors.append(f"{pattern}: no config file matches this pattern")
        else:
            matches = [Path(pattern)]
        for match in matches:
            if all(match.resolve() != seen.resolve() for seen in found):
                found.append(match)
    if errors:
        raise ConfigError(errors)
    if not found:
        raise ConfigError(["no config file given"])
    return tuple(found)


def read(paths: Sequence[Path]) -> Sources:
    """Read, parse and merge the files; raises ConfigError naming file:line for TOML errors and both files for a
    key defined twice."""
    files: list[SourceFile] = []
    errors: list[str] = []
    merged: dict[str, Any] = {}
    origins = Origins()
    owners: dict[int, dict[str, Path]] = {}  # which file wrote each key of each merged table
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            errors.append(f"{path}: cannot read config file: {exc.strerror}")
            continue
        files.append(SourceFile(path, text))
        try:
            data = parse_toml(text, str(path))
        except ConfigError as exc:
            errors.extend(exc.errors)
            continue
        _merge(merged, data, "", path, origins, owners, errors)
    if errors:
        raise ConfigError(errors)
    return Sources(merged, origins, tuple(files))


def parse_toml(text: str, name: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = _TOML_POSITION.search(str(exc))
        where = f"{name}:{match.group(1)}:{match.group(2)}" if match else name
        message = _TOML_POSITION.sub("", str(exc)).strip()
        raise ConfigError([f"{where}: invalid TOML: {message}"]) from exc


def _merge(
    into: dict[str, Any],
    new: dict[str, Any],
    path: str,
    file: Path,
    origins: Origins,
    owners: dict[int, dict[str, Path]],
    errors: list[str],
) -> None:
    folder = file.resolve().parent
    for key, value in new.items():
        key_path = f"{path}.{key}" if path else key
        if key not in into:
            into[key] = value
            owners.setdefault(id(into), {})[key] = file
            origins.record(into, key, folder)
            _record_all(value, file, origins, owners)
            continue
        existing = into[key]
        if isinstance(existing, dict) and isinstance(value, dict):
            _merge(existing, value, key_path, file, origins, owners, errors)
            continue
        first = owners.get(id(into), {}).get(key, file)
        errors.append(f"{key_path}: defined in both {first} and {file}")


def _record_all(value: Any, file: Path, origins: Origins, owners: dict[int, dict[str, Path]]) -> None:
    """Every key below a table one file wrote whole came from that file."""
    if isinstance(value, dict):
        for key, child in value.items():
            origins.record(value, key, file.resolve().parent)
            owners.setdefault(id(value), {})[key] = file
            _record_all(child, file, origins, owners)
    elif isinstance(value, list):
        for item in value:
            _record_all(item, file, origins, owners)
