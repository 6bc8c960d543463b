"""What LSD stores of content blocks TensorZero's clients know less of, read back by the TensorZero Python client:
a thought's `provider_type` (TensorZero's own field) is kept; a tool result's `is_error` (LSD's, from the Anthropic
route) is not stored, as the client refuses a field it does not know (`get_inferences` failed on it)."""

from __future__ import annotations

import asyncio

import httpx
from tensorzero import AsyncTensorZeroGateway, ListInferencesRequest

from tests.support.configs import echo_chat
from tests.support.gateway import in_process_gateway

CONFIG = f"""
[gateway.observability]
async_writes = false
{echo_chat()}
"""


async def test_the_tensorzero_client_reads_thoughts_and_failed_tool_results_back(database_url: str) -> None:
    messages = [
        {"role": "user", "content": "run it"},
        {
            "role": "assistant",
            "content": [
                {"type": "thought", "text": "hmm", "signature": "s", "provider_type": "anthropic"},
                {"type": "tool_call", "id": "c1", "name": "bash", "arguments": "{}"},
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "id": "c1", "name": "bash", "result": "no", "is_error": True}],
        },
    ]
    async with in_process_gateway(CONFIG, database_url) as base_url:
        async with httpx.AsyncClient(base_url=base_url) as http:  # the TensorZero client cannot send is_error
            r = await http.post("/inference", json={"function_name": "chat", "input": {"messages": messages}})
            assert r.status_code == 200, r.text
            inference_id = r.json()["inference_id"]
        client = await AsyncTensorZeroGateway.build_http(gateway_url=base_url)
        try:
            [stored] = (await client.get_inferences(ids=[inference_id], function_name="chat")).inferences
            request = ListInferencesRequest(function_name="chat")
            listed = (await client.list_inferences(request=request)).inferences
        finally:
            await asyncio.sleep(0)
    assert str(stored.inference_id) == inference_id
    assert any(str(i.inference_id) == inference_id for i in listed)
    content = stored.input.messages[1].content  # type: ignore[union-attr]
    assert content[0].provider_type == "anthropic"  # type: ignore[union-attr]
