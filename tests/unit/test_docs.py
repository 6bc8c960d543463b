"""Docs stay complete: every config key the loaders read and every route appear in docs/."""

from __future__ import annotations

import re
from pathlib import Path

from lsd.api.routes import ROUTES

ROOT = Path(__file__).resolve().parents[2]
_KEY = re.compile(r"\.(?:str|bool|int|float|choice|str_list|table|path_value|subtables)\(\s*\"([a-z_]+)\"")


def keys_read_by(path: Path) -> set[str]:
    return set(_KEY.findall(path.read_text()))


def test_every_config_key_is_documented() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    sources = [
        ROOT / "lsd" / "config" / "loader.py",
        ROOT / "lsd" / "config" / "auth.py",
        ROOT / "lsd" / "config" / "ratelimit.py",
        ROOT / "lsd" / "config" / "telemetry.py",
        ROOT / "lsd" / "config" / "experimentation.py",
        ROOT / "lsd" / "config" / "variant_types.py",
        ROOT / "lsd" / "config" / "tensorzero.py",
        *sorted((ROOT / "lsd" / "providers").rglob("*.py")),
    ]
    missing = {
        f"{source.name}: {key}"
        for source in sources
        for key in keys_read_by(source)
        if not re.search(rf"`[^`\n]*\b{key}\b[^`\n]*`", doc)
    }
    assert not missing, f"undocumented config keys: {sorted(missing)}"


def test_every_route_is_documented() -> None:
    doc = (ROOT / "docs" / "api.md").read_text()
    for route in ROUTES:
        for method in route.methods or ():
            if method != "HEAD":
                assert f"{method} {route.path}" in doc, f"{method} {route.path} is not in docs/api.md"


def test_readme_opens_with_the_two_commands() -> None:
    head = (ROOT / "README.md").read_text().splitlines()[:6]
    assert any(line.startswith("make run") for line in head)
    assert any(line.startswith("make test") for line in head)
