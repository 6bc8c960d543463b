"""The `azure` provider type: Azure OpenAI's Chat Completions, the `openai` wire format at another URL.

Options (besides type and timeouts):
    deployment_id     required; the deployment named in the URL (also sent as the body's "model")
    endpoint          required, e.g. "https://my-resource.openai.azure.com"
    api_version       default "2024-10-21"
    api_key_location  default "env::AZURE_OPENAI_API_KEY"; the key is sent in the `api-key` header
    cost              optional inline table {input_per_million, output_per_million}
    batch_cost        optional, the same shape: the Batch API price (default: `cost` at half price)

As an `[embedding_models]` provider it calls the deployment's `embeddings` operation (the `openai` type's body).

The output token limit is sent as "max_completion_tokens" from api-version 2024-09-01 on (the default among them:
o-series and GPT-5 deployments refuse "max_tokens"), and as "max_tokens" to older api-versions, which do not know
the other key.
"""

from __future__ import annotations

from typing import ClassVar
from urllib.parse import quote

from lsd.config.model import ProviderConfig
from lsd.config.reader import Table
from lsd.providers.base import KeyLocation
from lsd.providers.cost import parse_batch_cost, parse_cost
from lsd.providers.http import check_url
from lsd.providers.openai.batch import azure_api
from lsd.providers.openai.provider import ChatCompletionsProvider
from lsd.providers.proxies import proxy_option

DEFAULT_API_VERSION = "2024-10-21"
FIRST_COMPLETION_TOKENS_VERSION = "2024-09-01"  # the first api-version (a preview) that takes max_completion_tokens


def max_tokens_field(api_version: str) -> str:
    """The body key for the output token limit: dated api-versions before 2024-09-01 know only "max_tokens"; later
    ones, and the undated ones ("preview", "latest", "v1"), take "max_completion_tokens", which every model does."""
    dated = len(api_version) >= 10 and api_version[:4].isdigit() and api_version[4] == "-"
    return "max_tokens" if dated and api_version[:10] < FIRST_COMPLETION_TOKENS_VERSION else "max_completion_tokens"


def deployment_url(endpoint: str, deployment_id: str, api_version: str, path: str) -> str:
    """The URL of one of the deployment's operations (`chat/completions`, `embeddings`)."""
    deployment, version = quote(deployment_id, safe=""), quote(api_version, safe="")
    return f"{endpoint.rstrip('/')}/openai/deployments/{deployment}/{path}?api-version={version}"


class AzureProvider(ChatCompletionsProvider):
    type_name: ClassVar[str] = "azure"
    credential_headers: ClassVar[frozenset[str]] = frozenset({"api-key"})
    supports_batch: ClassVar[bool] = True
    supports_embeddings: ClassVar[bool] = True

    @classmethod
    def from_config(cls, config: ProviderConfig, options: Table) -> AzureProvider:
        deployment_id = options.str("deployment_id", required=True) or ""
        raw_endpoint = options.str("endpoint", required=True)
        if isinstance(raw_endpoint, str) and raw_endpoint.startswith("dynamic::"):  # TensorZero's per-request form
            options.error(
                "endpoint",
                "a dynamic endpoint (read from each request's credentials) is not supported by LSD yet: give the "
                "URL, or env::VARIABLE",
            )
            raw_endpoint = None
        endpoint = check_url(options, "endpoint", raw_endpoint)
        api_version = options.str("api_version", DEFAULT_API_VERSION) or DEFAULT_API_VERSION
        pricing = parse_cost(options)
        return cls(
            config,
            model_name=deployment_id,
            chat_url=deployment_url(endpoint, deployment_id, api_version, "chat/completions"),
            embeddings_url=deployment_url(endpoint, deployment_id, api_version, "embeddings"),
            key_location=KeyLocation.parse(options, "api_key_location", "env::AZURE_OPENAI_API_KEY"),
            key_header="api-key",
            key_prefix="",
            max_tokens_field=max_tokens_field(api_version),
            pricing=pricing,
            batch_pricing=parse_batch_cost(options, pricing),
            batch_api=azure_api(endpoint, quote(api_version, safe="")) if endpoint else None,
            proxy=proxy_option(options),
        )
