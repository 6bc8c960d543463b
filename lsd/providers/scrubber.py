"""Scrubber: the credential values of one provider call, replaced by [REDACTED] in whatever the provider answers.

A provider may repeat the key it was sent ("Incorrect API key provided: sk-…") in an error message, an error
body or (misbehaving) an answer; what LSD keeps or relays of that answer must not hold it. The secrets of a call
are the key and the value of every header sent that is stored redacted (`redact_headers`), and each
whitespace-separated word of such a value (the key of "Bearer <key>"). The rule, for any text:

1. every secret of at least MIN_SCRUBBED_KEY_LENGTH characters is replaced, wherever it appears (also in its
   JSON-escaped form; the API key also without its vendor prefix, `sk-` or `sk-ant-`);
2. a word (a run of letters, digits, `_`, `-`, dots inside it, and mask characters) that begins with a secret's
   first PREFIX_LENGTH characters is replaced whole: a key cut short or masked after its start ("sk-proj-abc…");
3. a masked word (three or more `*` in it) is replaced whole when the visible part before the mask begins the
   secret (3+ characters) or the visible part after it ends the secret (4+ characters): "sk-ab***...wxyz", as
   OpenAI shows a key.

Shorter fragments are not searched for: they are not enough of a key to use, and searching for them would
rewrite ordinary text. A call without secrets costs nothing; with secrets, a text that holds none of them costs
one `in` scan per distinct 8-character start (a secret holds its start, so one that is absent rules the whole
secret out) and one for `***`. Patterns are compiled only for a text that needs them (re caches them).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import orjson

from lsd.errors import ProviderError
from lsd.providers.base import MIN_SCRUBBED_KEY_LENGTH, REDACTED, is_secret_header

PREFIX_LENGTH = 8  # a word that starts with this much of a secret is taken for an echo of it
_WORD_TAIL = r"(?:[\w\-*…]|\.+(?=[\w\-*…]))*"  # the rest of a word: dots only inside it, not the full stop after
_MASK = "***"
_MASKED = re.compile(r"[\w\-]*\*{3,}" + _WORD_TAIL)
_VISIBLE = re.compile(r"[\w\-]+")


class Scrubber:
    """Replaces the secrets of one call in text (see the module docstring for the rule). Immutable once built."""

    __slots__ = ("_by_prefix", "_marks", "_secrets", "_tails", "_words")

    def __init__(self, secrets: Iterable[str] = (), tails: Iterable[str] = ()) -> None:
        # `tails`: the key without its vendor prefix, replaced only whole (their starts are ordinary words: a
        # `conformance-...` key's tail must not take every word that starts `conforma`).
        self._tails = tuple(sorted({t for t in tails if len(t) >= MIN_SCRUBBED_KEY_LENGTH}, key=len, reverse=True))
        found = {s for s in secrets if len(s) >= MIN_SCRUBBED_KEY_LENGTH}
        found |= {_json_escaped(s) for s in found if not s.isprintable() or '"' in s or "\\" in s}
        # Longest first, so a secret goes before a shorter one inside it.
        self._secrets = tuple(sorted(found, key=len, reverse=True))
        self._words = tuple(s for s in self._secrets if s.split(maxsplit=1) == [s])
        by_prefix: dict[str, list[str]] = {}
        for secret in self._secrets:
            by_prefix.setdefault(secret[:PREFIX_LENGTH], []).append(secret)
        # Each 8-character start with the secrets that begin with it: a text without the start holds none of them.
        self._by_prefix = tuple((prefix, tuple(group)) for prefix, group in by_prefix.items())
        # The same starts and the mask as UTF-8: a body whose bytes hold none of them holds no secret, and is not
        # decoded to be searched (a 100 KiB request body: its decode was most of its scrub).
        starts = {*by_prefix, *(tail[:PREFIX_LENGTH] for tail in self._tails)}
        self._marks = (*(start.encode() for start in starts), _MASK.encode())

    @classmethod
    def for_call(
        cls, key: str | None, headers: Mapping[str, str], credential_headers: frozenset[str] = frozenset()
    ) -> Scrubber:
        """The scrubber of a call sending `headers` with `key`: the key, and every header value stored redacted
        (a value that holds the key, such as "Bearer <key>", adds nothing: the key is replaced inside it)."""
        secrets = [] if key is None else [key]
        declared = {name.lower() for name in credential_headers}
        for name, value in headers.items():
            if (key is None or key not in value) and (name.lower() in declared or is_secret_header(name, value)):
                secrets.append(value)
                secrets.extend(value.split())
        return cls(secrets, () if key is None else _without_prefix(key)) if secrets else NO_SECRETS

    def __bool__(self) -> bool:
        return bool(self._secrets or self._tails)

    def text(self, text: str) -> str:
        """`text` with every secret, and every echo of one the rule recognises, replaced by [REDACTED]."""
        if not self._secrets and not self._tails:
            return text
        for prefix, secrets in self._by_prefix:
            if prefix in text:
                for secret in secrets:
                    if secret in text:
                        text = text.replace(secret, REDACTED)
                if prefix in text:
                    text = re.sub(re.escape(prefix) + _WORD_TAIL, REDACTED, text)
        if _MASK in text:
            text = _MASKED.sub(self._masked, text)
        for tail in self._tails:
            if tail in text:
                text = text.replace(tail, REDACTED)
        return text

    def optional(self, text: str | None) -> str | None:
        return None if text is None else self.text(text)

    def body(self, data: bytes) -> bytes:
        """A response body (bytes) scrubbed; the same object when it holds nothing to replace."""
        if not self or not any(mark in data for mark in self._marks):
            return data
        text = data.decode("utf-8", "replace")
        scrubbed = self.text(text)
        return data if scrubbed is text else scrubbed.encode()

    def error(self, exc: ProviderError) -> ProviderError:
        """`exc` with its message and what it carries of the exchange scrubbed (in place; returned)."""
        if self:
            exc.message = self.text(exc.message)
            exc.args = (exc.message,)
            exc.raw_request = self.optional(exc.raw_request)
            exc.raw_response = self.optional(exc.raw_response)
            exc.provider_message = self.optional(exc.provider_message)
        return exc

    def _masked(self, match: re.Match[str]) -> str:
        word = match.group()
        visible = _VISIBLE.findall(word)
        start = visible[0] if visible and word[0] != "*" else ""
        end = visible[-1] if visible and word[-1] != "*" else ""
        for secret in self._words:
            if (len(start) >= 3 and secret.startswith(start)) or (len(end) >= 4 and secret.endswith(end)):
                return REDACTED
        return word


def _without_prefix(secret: str) -> Iterable[str]:
    """The API key after each vendor prefix it starts with (`sk-`, `sk-ant-`, `sk-proj-`: a `-` in its first 12
    characters): a provider that echoes the key without it still echoes the secret part. (A key only: a header
    value's words after a `-` may be ordinary ones.)"""
    at = secret.find("-")
    while 0 <= at < 12:
        tail = secret[at + 1 :]
        if len(tail) >= MIN_SCRUBBED_KEY_LENGTH:
            yield tail
        at = secret.find("-", at + 1)


def _json_escaped(secret: str) -> str:
    """`secret` as it appears inside a JSON string."""
    return orjson.dumps(secret).decode()[1:-1]


NO_SECRETS = Scrubber()
