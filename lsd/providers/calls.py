"""One HTTP call to a provider, as the shell (lsd.providers.http) prepares and records it: the prepared POST with
its redacted headers and key fingerprint, a successful JSON exchange, and what the shell needs of a provider's
stream parser."""

from __future__ import annotations

from typing import Any, Protocol

from lsd.immutable import immutable
from lsd.providers.base import key_fingerprint, redact_headers
from lsd.providers.scrubber import NO_SECRETS, Scrubber
from lsd.providers.sse import SseEvent
from lsd.types import StreamChunk


@immutable
class Call:
    """One prepared POST, before any I/O: where it goes, the body as sent, its headers and the key they carry
    (never stored: rows get `request_headers` and `api_key_sha256`)."""

    url: str
    body: bytes
    raw: str | bytes  # the request as stored: a JSON body's bytes (decoded where needed), or text ("GET <url>")
    headers: dict[str, str]
    key: str | None
    ttft_timeout_s: float | None = None
    credential_headers: frozenset[str] = frozenset()  # the provider's, redacted in `request_headers`
    scrubber: Scrubber = NO_SECRETS  # the key and credential header values, removed from what comes back

    @property
    def raw_request(self) -> str:
        raw = self.raw
        return raw if isinstance(raw, str) else raw.decode("utf-8", "replace")

    @property
    def request_headers(self) -> dict[str, str]:
        return redact_headers(self.headers, self.credential_headers, key=self.key)

    @property
    def api_key_sha256(self) -> str | None:
        return key_fingerprint(self.key)


@immutable
class Exchange:
    """One successful JSON POST: the call and the answer, as received and decoded."""

    call: Call
    raw_response: str
    data: dict[str, Any]

    @property
    def raw_request(self) -> str:
        return self.call.raw_request


class StreamParser(Protocol):
    """What HttpProvider.stream needs of a provider's stream state (each provider's `stream.StreamState`)."""

    def feed_event(self, event: SseEvent) -> StreamChunk | None:
        """The chunk for one event, or None; raises ProviderError for an error event or a malformed one."""

    def raw_response(self) -> str:
        """The payloads received so far, for the error row of a stream that breaks."""

    def missing_end(self) -> str | None:
        """What a stream that stops here lacks (such as "[DONE]"); None once it has ended properly."""

    def finish(self) -> StreamChunk | None:
        """The chunk that closes a properly ended stream (None when its last chunk was already fed out)."""
