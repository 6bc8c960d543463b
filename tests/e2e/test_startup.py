"""The start-up contract, checked on real `lsd` processes: exit codes and one clear message."""

from __future__ import annotations

from pathlib import Path

import psycopg

from lsd.store.local import free_port
from tests.support.gateway import ROOT, run_lsd

DEMO = str(ROOT / "config" / "lsd.toml")


def test_serve_without_database_url_exits_2_naming_the_variable() -> None:
    result = run_lsd("serve", "--config", DEMO, env={"LSD_DATABASE_URL": ""})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "LSD_DATABASE_URL" in lines[0]


def test_unreachable_database_exits_naming_host_and_port_not_password(tmp_path: Path) -> None:
    config = tmp_path / "lsd.toml"
    config.write_text("[gateway.database]\nconnect_timeout_s = 1\n")
    port = free_port()
    url = f"postgresql://lsd:hunter2secret@127.0.0.1:{port}/lsd"
    result = run_lsd("serve", "--config", str(config), env={"LSD_DATABASE_URL": url})
    assert result.returncode == 3
    assert f"127.0.0.1:{port}" in result.stderr
    assert "hunter2secret" not in result.stderr + result.stdout


def test_invalid_config_exits_1_with_key_path(tmp_path: Path, database_url: str) -> None:
    config = tmp_path / "lsd.toml"
    config.write_text("[gateway]\nbind_adress = '127.0.0.1:1'\n")
    result = run_lsd("serve", "--config", str(config), env={"LSD_DATABASE_URL": database_url})
    assert result.returncode == 1
    assert "gateway.bind_adress: unknown key (did you mean 'bind_address'?)" in result.stderr


def test_toml_syntax_error_exits_1_with_file_and_line(tmp_path: Path) -> None:
    config = tmp_path / "lsd.toml"
    config.write_text("[gateway]\n\nbind_address = = 1\n")
    result = run_lsd("config", "check", str(config))
    assert result.returncode == 1
    assert f"{config}:3:" in result.stderr


def test_config_check_accepts_the_demo_config() -> None:
    result = run_lsd("config", "check", DEMO)
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_disabled_migrations_on_an_empty_database_refuse_to_start(tmp_path: Path, empty_database_url: str) -> None:
    config = tmp_path / "lsd.toml"
    config.write_text("[gateway.database]\ndisable_automatic_migrations = true\n")
    result = run_lsd("serve", "--config", str(config), env={"LSD_DATABASE_URL": empty_database_url})
    assert result.returncode == 4
    assert "missing migration" in result.stderr


def test_migrate_then_doctor(empty_database_url: str) -> None:
    doctor = run_lsd("doctor", env={"LSD_DATABASE_URL": empty_database_url})
    assert doctor.returncode == 1 and "pending migrations" in doctor.stdout
    migrated = run_lsd("migrate", env={"LSD_DATABASE_URL": empty_database_url})
    assert migrated.returncode == 0 and "0001_schema.sql" in migrated.stdout
    again = run_lsd("migrate", env={"LSD_DATABASE_URL": empty_database_url})
    assert again.returncode == 0 and "up to date" in again.stdout
    doctor = run_lsd("doctor", env={"LSD_DATABASE_URL": empty_database_url})
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "server version" in doctor.stdout and "partitions chat_inferences" in doctor.stdout
    assert "pool: size=" in doctor.stdout


def test_python_dash_m_and_help() -> None:
    result = run_lsd("--help")
    assert result.returncode == 0
    for command in ("serve", "migrate", "config", "doctor"):
        assert command in result.stdout


def test_serve_snapshots_the_config(tmp_path: Path, database_url: str) -> None:
    # `lsd migrate` + config snapshot happen before serving; a bad bind makes serve stop right after.
    result = run_lsd("serve", "--config", DEMO, "--bind", "256.0.0.1:1", env={"LSD_DATABASE_URL": database_url})
    assert result.returncode != 0
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT config FROM config_snapshots").fetchone()
    assert row is not None and row[0] == Path(DEMO).read_text()


def test_stats_refresh_by_hand(database_url: str) -> None:
    result = run_lsd("stats", "refresh", env={"LSD_DATABASE_URL": database_url})
    assert result.returncode == 0, result.stderr
    assert "statistics refreshed" in result.stdout
