"""The `gcp_vertex_gemini` and `gcp_vertex_anthropic` provider types: Google's Vertex AI.

gcp_vertex_gemini   POST {resource}:generateContent and :streamGenerateContent?alt=sse, the Gemini wire format
                    (lsd.providers.gemini.wire and .stream), resource
                    `projects/P/locations/L/publishers/google/models/M`
gcp_vertex_anthropic POST {resource}:rawPredict and :streamRawPredict, Anthropic's Messages body
                    (lsd.providers.anthropic.wire and .stream) without `model` and with
                    `anthropic_version = "vertex-2023-10-16"`, resource `.../publishers/anthropic/models/M`

Options (besides type and timeouts):
  model_id             the model ("gemini-2.5-flash", "claude-sonnet-4-5@20250929"); or
  endpoint_id          a Vertex endpoint (fine-tuned models, custom endpoints): exactly one of the two
  location             required; the region ("us-central1", "europe-west4", "global")
  project_id           required; the Google Cloud project id
  credential_location  default "path_from_env::GCP_VERTEX_CREDENTIALS_PATH"; also "path::FILE", "env::VAR",
                       "sdk" (see lsd.providers.gcp_vertex.credentials)
  api_base             optional (LSD's): the Vertex URL up to the version, default
                       "https://{location}-aiplatform.googleapis.com/v1/" (a private endpoint, a test server)
  max_tokens           gcp_vertex_anthropic only: default 4096, sent when a request sets none
  cost, proxy          the options of every provider

Needs the `gcp` extra (`pip install 'lsd[gcp]'`). The token is sent as `Authorization: Bearer`, stored
[REDACTED]; `api_key_sha256` is the SHA-256 of the token sent (tokens rotate, about hourly).
"""

from lsd.providers.gcp_vertex.provider import VertexAnthropicProvider, VertexGeminiProvider

__all__ = ["VertexAnthropicProvider", "VertexGeminiProvider"]
