"""The `aws_bedrock` provider type: Bedrock's Converse API (`POST /model/{modelId}/converse`) and ConverseStream
(`/converse-stream`, the binary `application/vnd.amazon.eventstream` framing), signed with SigV4.

Options (besides type and timeouts):
  model_id                  required; a model or inference-profile id ("us.anthropic.claude-sonnet-4-5-...-v1:0")
  region                    the AWS region ("us-east-1"); required unless allow_auto_detect_region is true
  allow_auto_detect_region  default false; true takes the region AWS's own tools would (AWS_REGION,
                            AWS_DEFAULT_REGION, the profile's `region`)
  endpoint_url              optional (LSD's, not TensorZero's): the Bedrock runtime URL to call instead of
                            https://bedrock-runtime.{region}.amazonaws.com (a VPC endpoint, a test server)
  cost                      optional; the `cost` option of every provider
  proxy                     optional; the `proxy` option of every provider

Credentials: botocore's standard chain (lsd.providers.aws_bedrock.credentials); needs the `aws` extra
(`pip install 'lsd[aws]'`). Rows store the access key id's SHA-256 as `api_key_sha256`; the Authorization and
X-Amz-Security-Token headers are stored [REDACTED].

Modules: `wire` maps requests, responses and errors (pure; its docstring states the mapping choices), `stream`
decodes the event stream and maps its events, `credentials` finds credentials and signs, `provider` configures
the HTTP shell (lsd.providers.http).
"""

from lsd.providers.aws_bedrock.provider import BedrockProvider

__all__ = ["BedrockProvider"]
