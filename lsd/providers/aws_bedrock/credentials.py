"""AWS credentials and SigV4 signatures for aws_bedrock, through botocore (the `aws` extra).

Credentials come from botocore's standard chain, in its order: the environment (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), the shared files (AWS_PROFILE, ~/.aws/credentials and config, SSO and
assume-role profiles), web identity (AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN), the container role (ECS/EKS) and
the instance role (IMDS). Finding them may read files and make HTTP calls with botocore's own client, which
blocks, so it runs on a worker thread, once; temporary credentials are refreshed on a worker thread when botocore
says they are near expiry (its advisory window, 15 minutes before). Each call is then signed on the event loop
(botocore's signer: about 0.3 ms of CPU a call, measured on the development machine); the request itself goes out
through LSD's transport.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from dataclasses import field
from typing import Any

from lsd.errors import ProviderError
from lsd.immutable import immutable

try:
    from botocore import exceptions as botocore_exceptions
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import RefreshableCredentials
    from botocore.session import Session

    AWS_EXTRA_MISSING = False
except ImportError:  # the provider refuses its config
    AWS_EXTRA_MISSING = True
SIGNING_NAME = "bedrock"  # bedrock-runtime signs as "bedrock"
# botocore's signer logs each canonical request, the session token in it, at DEBUG: its logger stays above that,
# whatever LSD_LOG_LEVEL says (tests/integration/test_bedrock_vertex.py checks the log).
logging.getLogger("botocore.auth").setLevel(logging.INFO)
CHAIN = "the environment, the shared profile, web identity, the container role or the instance role"
# A Bedrock API key (AWS's, for Bedrock alone): sent as `Authorization: Bearer`, instead of a SigV4 signature, when
# this variable is set, as botocore does for Bedrock.
BEARER_TOKEN_ENV = "AWS_BEARER_TOKEN_BEDROCK"


@immutable
class AwsIdentity:
    """Credentials frozen for the calls of the next minutes, and the region they sign for (the secrets stay out of
    its repr)."""

    access_key: str
    region: str
    secret_key: str = field(repr=False)
    token: str | None = field(repr=False)
    bearer: str | None = field(default=None, repr=False)  # a Bedrock API key (BEARER_TOKEN_ENV): no signature


class AwsCredentials:
    """Where a provider's credentials and region come from. No I/O until `current()`."""

    def __init__(self, provider: str, *, region: str | None, auto_detect_region: bool) -> None:
        self.provider = provider
        self.region = region
        self.auto_detect_region = auto_detect_region
        self._credentials: Any = None  # botocore's Credentials (RefreshableCredentials for temporary ones)
        self._region: str | None = region
        self._lock = asyncio.Lock()

    async def current(self) -> AwsIdentity:
        """Fresh credentials and the region; resolving or refreshing them on a worker thread when needed.
        Raises ProviderError(kind="auth", not retryable) when the chain finds none or cannot refresh them."""
        bearer = os.environ.get(BEARER_TOKEN_ENV)
        if bearer:
            return AwsIdentity("", self._bearer_region(), secret_key="", token=None, bearer=bearer)
        credentials = self._credentials
        if credentials is None or _refresh_needed(credentials):
            async with self._lock:
                if self._credentials is None:
                    self._credentials, self._region = await asyncio.to_thread(self._resolve)
                credentials = self._credentials
                if _refresh_needed(credentials):
                    frozen = await asyncio.to_thread(self._frozen, credentials)
                    return self._identity(frozen)
        return self._identity(credentials.get_frozen_credentials())

    def _bearer_region(self) -> str:
        """The region of a call made with a Bedrock API key: the option, else (auto-detected) AWS_REGION or
        AWS_DEFAULT_REGION (a profile's region is not read for it)."""
        region = self.region
        if region is None and self.auto_detect_region:
            region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if not region:
            raise self._failed("allow_auto_detect_region is set but neither AWS_REGION nor AWS_DEFAULT_REGION is")
        return region

    def _identity(self, frozen: Any) -> AwsIdentity:
        region = self._region or ""
        return AwsIdentity(frozen.access_key, region, secret_key=frozen.secret_key, token=frozen.token)

    def _resolve(self) -> tuple[Any, str]:
        """On a worker thread: the chain's credentials and the region (the option, else the detected one)."""
        try:
            session = Session()
            credentials = session.get_credentials()
            region = self.region
            if region is None and self.auto_detect_region:
                # AWS_REGION first, as the AWS SDKs other than botocore read it; then AWS_DEFAULT_REGION, the profile.
                region = os.environ.get("AWS_REGION") or session.get_config_variable("region")
        except botocore_exceptions.BotoCoreError as exc:
            raise self._failed(f"the AWS credential chain failed: {exc}") from None
        if credentials is None:
            raise self._failed(f"no AWS credentials found (looked in {CHAIN})")
        if not region:
            where = "AWS_REGION, AWS_DEFAULT_REGION, the profile's region"
            raise self._failed(f"allow_auto_detect_region is set but no AWS region was found ({where})")
        return credentials, region

    def _frozen(self, credentials: Any) -> Any:
        try:
            return credentials.get_frozen_credentials()
        except botocore_exceptions.BotoCoreError as exc:
            raise self._failed(f"refreshing the AWS credentials failed: {exc}") from None

    def _failed(self, message: str) -> ProviderError:
        return ProviderError(message, provider=self.provider, retryable=False, kind="auth")


def _refresh_needed(credentials: Any) -> bool:
    return isinstance(credentials, RefreshableCredentials) and bool(credentials.refresh_needed())


def sign(identity: AwsIdentity, url: str, body: bytes, headers: Mapping[str, str]) -> dict[str, str]:
    """`headers` plus X-Amz-Date, X-Amz-Security-Token (temporary credentials) and the SigV4 Authorization."""
    request = AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
    credentials = _ReadOnly(identity.access_key, secret_key=identity.secret_key, token=identity.token)
    SigV4Auth(credentials, SIGNING_NAME, identity.region).add_auth(request)
    return dict(request.headers.items())


@immutable
class _ReadOnly:
    """The credentials shape botocore's signer reads."""

    access_key: str
    secret_key: str = field(repr=False)
    token: str | None = field(repr=False)
