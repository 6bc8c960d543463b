"""Google Cloud access tokens for gcp_vertex_*, through google-auth (the `gcp` extra).

`credential_location` (TensorZero's key) says where the credentials are:
    path::/file.json           a service-account key file (relative paths resolve against the config file's folder)
    path_from_env::VAR         the variable holds the path of such a file (the default: GCP_VERTEX_CREDENTIALS_PATH)
    env::VAR                   the variable holds the key file's JSON itself (or, when it does not start with "{",
                               its path)
    sdk                        Application Default Credentials: GOOGLE_APPLICATION_CREDENTIALS, gcloud's user
                               credentials, the metadata server on GCE/GKE/Cloud Run
The file is read, and the token fetched, on first use (no I/O at config load). A service account's token comes
from the `token_uri` its key file names (a JWT grant signed with its private key). google-auth's refresh blocks, so
it runs on a worker thread, its HTTP call carried by LSD's transport (proxies and timeouts as for any provider
call); the token is kept until google-auth calls it stale (3 minutes 45 seconds before it expires).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from lsd.config.reader import Table
from lsd.errors import ProviderError
from lsd.immutable import immutable
from lsd.providers.proxies import ProxyChoice
from lsd.providers.transport import Transport

try:
    import google.auth
    from google.auth import exceptions as google_exceptions
    from google.auth.credentials import TokenState
    from google.oauth2 import service_account

    GCP_EXTRA_MISSING = False
except ImportError:  # the provider refuses its config
    GCP_EXTRA_MISSING = True
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
DEFAULT_LOCATION = "path_from_env::GCP_VERTEX_CREDENTIALS_PATH"
_KINDS = ("path", "path_from_env", "env")


@immutable
class CredentialLocation:
    """Where the credentials are: kind "path" | "path_from_env" | "env" | "sdk", and the path or variable name."""

    kind: str
    name: str = ""

    @staticmethod
    def parse(options: Table, key: str = "credential_location") -> CredentialLocation:
        raw = options.str(key, DEFAULT_LOCATION, env=False)
        if raw == "sdk":
            return CredentialLocation("sdk")
        if isinstance(raw, str):
            kind, _, name = raw.partition("::")
            if kind in _KINDS and name:
                if kind == "path" and not Path(name).is_absolute():
                    name = str((options.key_dir(key) / name).resolve())
                return CredentialLocation(kind, name)
        options.error(key, f"expected 'path::FILE', 'path_from_env::VAR', 'env::VAR' or 'sdk', got {raw!r}")
        return CredentialLocation("sdk")


class GcpTokens:
    """One provider's access token: fetched on first use, kept while fresh, refreshed on a worker thread."""

    def __init__(self, provider: str, location: CredentialLocation, *, proxy: ProxyChoice = None) -> None:
        self.provider = provider
        self.location = location
        self.proxy = proxy
        self._credentials: Any = None  # google-auth's Credentials, loaded on first use
        self._lock = asyncio.Lock()

    async def token(self, transport: Transport, timeout_s: float | None = None) -> str:
        """A fresh access token. Raises ProviderError(kind="auth", not retryable) when the credentials cannot be
        found or read, and a retryable one (kind "connection") when the token endpoint cannot be reached."""
        credentials = self._credentials
        if credentials is not None and credentials.token_state == TokenState.FRESH:
            return str(credentials.token)
        async with self._lock:
            if self._credentials is None:
                self._credentials = await asyncio.to_thread(self._load)
            credentials = self._credentials
            if credentials.token_state != TokenState.FRESH:
                request = TransportRequest(transport, asyncio.get_running_loop(), self.provider, self.proxy, timeout_s)
                await asyncio.to_thread(self._refresh, credentials, request)
            return str(credentials.token)

    @property
    def quota_project(self) -> str | None:
        """The credentials' quota project (gcloud's user credentials name one; a key file may): Google bills and
        checks quota against it when calls carry it as `x-goog-user-project`, as google-auth's own requests do."""
        project = getattr(self._credentials, "quota_project_id", None)
        return project if isinstance(project, str) and project else None

    def _load(self) -> Any:
        """On a worker thread: the credentials `location` names."""
        kind, name = self.location.kind, self.location.name
        try:
            if kind == "sdk":
                credentials, _ = google.auth.default(scopes=list(SCOPES))
                return credentials
            if kind in ("env", "path_from_env"):
                if name not in os.environ:
                    raise self._failed(f"environment variable {name} is not set")
                value = os.environ[name]
                if kind == "env" and value.lstrip().startswith("{"):
                    return self._from_info(orjson.loads(value), f"environment variable {name}")
                name = value
            return self._from_info(orjson.loads(Path(name).read_bytes()), name)
        except (OSError, orjson.JSONDecodeError) as exc:
            raise self._failed(f"cannot read the service-account key ({kind}): {exc}") from None
        except google_exceptions.GoogleAuthError as exc:
            raise self._failed(f"no Google credentials: {exc}") from None

    def _from_info(self, info: object, source: str) -> Any:
        if not isinstance(info, dict) or info.get("type") != "service_account":
            raise self._failed(f"{source} is not a service-account key file (its type is not 'service_account')")
        try:
            return service_account.Credentials.from_service_account_info(info, scopes=list(SCOPES))  # type: ignore[no-untyped-call]
        except ValueError as exc:
            raise self._failed(f"{source} is not a usable service-account key: {exc}") from None

    def _refresh(self, credentials: Any, request: TransportRequest) -> None:
        try:
            credentials.refresh(request)
        except google_exceptions.TransportError as exc:
            message = f"the Google token endpoint could not be reached: {exc}"
            raise ProviderError(message, provider=self.provider, kind="connection") from None
        except google_exceptions.RefreshError as exc:
            raise self._failed(f"the Google token endpoint refused the credentials: {exc}") from None

    def _failed(self, message: str) -> ProviderError:
        return ProviderError(message, provider=self.provider, retryable=False, kind="auth")


class TransportResponse:
    """One answer of LSD's transport, as google-auth reads it (google.auth.transport.Response's shape)."""

    def __init__(self, status: int, headers: Mapping[str, str], data: bytes) -> None:
        self._status, self._headers, self._data = status, headers, data

    @property
    def status(self) -> int:
        return self._status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._headers

    @property
    def data(self) -> bytes:
        return self._data


class TransportRequest:
    """google-auth's HTTP callable (google.auth.transport.Request's shape), run on a worker thread: each
    request is sent by LSD's transport on the event loop (`loop`) and waited for."""

    def __init__(
        self,
        transport: Transport,
        loop: asyncio.AbstractEventLoop,
        provider: str,
        proxy: ProxyChoice,
        timeout_s: float | None,
    ) -> None:
        self.transport, self.loop, self.provider, self.proxy = transport, loop, provider, proxy
        self.timeout_s = timeout_s or 30.0

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> TransportResponse:
        timeout_s = float(timeout) if timeout else self.timeout_s
        sent = dict(headers or {})
        if method.upper() == "POST":
            coroutine = self.transport.post(
                url, body or b"", sent, provider=self.provider, timeout_s=timeout_s, proxy=self.proxy
            )
        else:
            coroutine = self.transport.get(url, sent, provider=self.provider, timeout_s=timeout_s, proxy=self.proxy)
        try:
            response = asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()
        except ProviderError as exc:
            raise google_exceptions.TransportError(exc.message) from None  # type: ignore[no-untyped-call]
        return TransportResponse(response.status, response.headers, response.body)
