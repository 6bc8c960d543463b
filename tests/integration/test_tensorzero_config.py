"""A TensorZero user's config, several files under a glob, passes `lsd config check` unchanged and serves."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import httpx
import pytest
from openai import AsyncOpenAI
from tensorzero import AsyncTensorZeroGateway

from lsd.config import load_many
from tests.fakes.openai_server import FakeOpenAI
from tests.support.gateway import Daemon, in_process_gateway, run_lsd
from tests.support.tensorzero_config import write_tensorzero_config


def test_lsd_config_check_accepts_the_files_unchanged(tmp_path: Path) -> None:
    pattern = write_tensorzero_config(tmp_path)
    result = run_lsd("config", "check", "--config", pattern)
    assert result.returncode == 0, result.stderr
    assert "ok (2 models, 4 functions)" in result.stdout


def test_lsd_config_check_names_both_files_of_a_table_defined_twice(tmp_path: Path) -> None:
    pattern = write_tensorzero_config(tmp_path)
    extra = tmp_path / "config" / "zz.toml"
    extra.write_text('[models.echo]\nrouting = ["dummy"]\n')
    result = run_lsd("config", "check", "--config", pattern)
    assert result.returncode == 1
    assert f"models.echo.routing: defined in both {tmp_path / 'config' / 'tensorzero.toml'} and {extra}" in (
        result.stdout + result.stderr
    )


def test_a_missing_include_fails_start_up_not_requests(tmp_path: Path) -> None:
    pattern = write_tensorzero_config(tmp_path)
    (tmp_path / "config" / "partials" / "persona.minijinja").unlink()
    result = run_lsd("serve", "--config", pattern, env={"LSD_DATABASE_URL": "postgresql://unused.invalid/x"})
    assert result.returncode != 0
    assert "functions.draft.variants.a.system_template" in result.stderr
    assert "cannot load included template 'partials/persona.minijinja'" in result.stderr


async def test_it_serves_inferences_through_the_dummy_provider(tmp_path: Path, database_url: str) -> None:
    fake = FakeOpenAI()
    await fake.start()
    config = load_many([write_tensorzero_config(tmp_path, fake.api_base)])
    async with (
        in_process_gateway(config, database_url) as base_url,
        httpx.AsyncClient(base_url=base_url) as client,
        contextlib.AsyncExitStack() as stack,
    ):
        stack.push_async_callback(fake.stop)
        local = await client.post(
            "/inference",
            json={"function_name": "local_chat", "input": {"messages": [{"role": "user", "content": "two words"}]}},
        )
        assert local.status_code == 200, local.text  # the vllm type, priced by TensorZero's list-form cost
        usage = local.json()["usage"]
        expected = (usage["input_tokens"] * 1.0 + usage["output_tokens"] * 2.0) / 1e6
        assert usage["cost"] == pytest.approx(expected) and expected > 0
        wrapped = await client.post(
            "/inference",
            json={"function_name": "wrapped", "input": {"messages": [{"role": "user", "content": "hello"}]}},
        )
        assert wrapped.status_code == 200, wrapped.text
        assert wrapped.json()["content"][0]["text"] == "echo: <q>hello</q>"
        topic = {"type": "template", "name": "topic", "arguments": {"topic": "owls"}}
        facts = await client.post(
            "/inference",
            json={"function_name": "facts", "input": {"messages": [{"role": "user", "content": [topic]}]}},
        )
        assert facts.status_code == 200, facts.text
        assert facts.json()["content"][0]["text"] == "echo: Tell me about owls"
        draft = await client.post(
            "/inference",
            json={
                "function_name": "draft",
                "input": {"system": {"name": "Bo"}, "messages": [{"role": "user", "content": "hi"}]},
            },
        )
        assert draft.status_code == 200, draft.text
        status = (await client.get("/status")).json()
        assert status["config_hash"] == config.source_hash


@pytest.mark.e2e
async def test_a_running_lsd_serve_with_the_glob_serves_tensorzeros_clients(tmp_path: Path, database_url: str) -> None:
    """`lsd serve --config 'config/**/*.toml'` as a real process: the tensorzero client and the OpenAI SDK, unchanged,
    against the TensorZero-format files (a named template, an input wrapper, the vllm type with list-form cost)."""
    fake = FakeOpenAI()
    await fake.start()
    pattern = write_tensorzero_config(tmp_path, fake.api_base)
    daemon = Daemon(Path(pattern), database_url, log_path=tmp_path / "lsd.log")
    try:
        await asyncio.to_thread(daemon.wait_ready)
        client = await AsyncTensorZeroGateway.build_http(gateway_url=daemon.base_url)
        try:
            topic = {"type": "template", "name": "topic", "arguments": {"topic": "owls"}}
            facts = await client.inference(
                function_name="facts", input={"messages": [{"role": "user", "content": [topic]}]}
            )
            assert facts.content[0].text == "echo: Tell me about owls"  # type: ignore[union-attr]
        finally:
            await client.close()
        openai = AsyncOpenAI(base_url=f"{daemon.base_url}/openai/v1", api_key="unused")
        wrapped = await openai.chat.completions.create(
            model="tensorzero::function_name::wrapped", messages=[{"role": "user", "content": "hello"}]
        )
        assert wrapped.choices[0].message.content == "echo: <q>hello</q>"
        assert wrapped.model.startswith("tensorzero::function_name::wrapped::variant_name::")
        local = await openai.chat.completions.create(
            model="tensorzero::function_name::local_chat", messages=[{"role": "user", "content": "two words"}]
        )
        assert local.usage is not None and local.model_extra is not None
        assert local.usage.model_extra is not None and local.usage.model_extra["tensorzero_cost"] > 0
        await openai.close()
    finally:
        daemon.terminate()
        await fake.stop()
