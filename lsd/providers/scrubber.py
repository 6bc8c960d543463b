"""Scrubber: the credential values of one provider call, replaced by [REDACTED] in whatever the provider answers.

A provider may repeat the key it was sent ("Incorrect API key provided: sk-…") in an error message, an error
body or (misbehaving) an answer; what LSD keeps or relays of that answer must not hold it. The secrets of a call
are the key and the value of every header sent that is stored redacted (`redact_headers`), and each
whitespace-separated word of such a value (the key of "Bearer <key>"). The rule, for any text:

1. every secret of at least MIN_SCRUBBED_KEY_LENGTH characters is replaced, wherever it appears (also in its
   JSON-escaped form);
2. a word (a run of letters, digits, `_`, `-`, dots inside it, and mask characters) that begins with a secret's
   first PREFIX_LENGTH characters is replaced whole: a key cut short or masked after its start ("sk-proj-abc…");
3. a masked word (three or more `*` or `•` in it) is replaced whole when the visible part before the mask
   begins the secret (3+ characters) or the visible part after it ends the secret (4+ characters):
   "sk-ab***...wxyz", as OpenAI shows a key.

Shorter fragments are not searched for: they are not enough of a key to use, and searching for them would
rewrite ordinary text. A call without secrets costs nothing; with secrets, a text that holds none of them costs
one `in` scan per secret and prefix, plus one for the mask characters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import orjson

from lsd.errors import ProviderError
from lsd.providers.base import MIN_SCRUBBED_KEY_LENGTH, REDACTED, redact_headers

PREFIX_LENGTH = 8  # a word that starts with this much of a secret is taken for an echo of it
_WORD_TAIL = r"(?:[\w\-*•…]|\.+(?=[\w\-*•…]))*"  # the rest of a word: dots only inside it, not the full stop after
_MASKED = re.compile(r"[\w\-]*[*•]{3,}" + _WORD_TAIL)
_MASKS = ("***", "•••")
_VISIBLE = re.compile(r"[\w\-]+")


class Scrubber:
    """Replaces the secrets of one call in text (see the module docstring for the rule). Immutable once built."""

    __slots__ = ("_masks", "_prefixes", "_secrets")

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        found = {s for s in secrets if len(s) >= MIN_SCRUBBED_KEY_LENGTH}
        found |= {escaped for s in found if (escaped := orjson.dumps(s).decode()[1:-1]) != s}
        # Longest first, so a header value ("Bearer <key>") goes before the key inside it.
        self._secrets = tuple(sorted(found, key=len, reverse=True))
        words = [s for s in self._secrets if not any(c.isspace() for c in s)]
        prefixes = {s[:PREFIX_LENGTH] for s in words}
        self._prefixes = tuple((p, re.compile(re.escape(p) + _WORD_TAIL)) for p in sorted(prefixes))
        self._masks = tuple(words)

    @classmethod
    def for_call(
        cls, key: str | None, headers: Mapping[str, str], credential_headers: frozenset[str] = frozenset()
    ) -> Scrubber:
        """The scrubber of a call sending `headers` with `key`: the key, and every header value stored redacted."""
        secrets = [] if key is None else [key]
        for name, shown in redact_headers(headers, credential_headers, key=key).items():
            if shown == REDACTED:
                value = headers[name]
                secrets.append(value)
                secrets.extend(value.split())
        return cls(secrets) if secrets else NO_SECRETS

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def text(self, text: str) -> str:
        """`text` with every secret, and every echo of one the rule recognises, replaced by [REDACTED]."""
        if not self._secrets:
            return text
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        for prefix, pattern in self._prefixes:
            if prefix in text:
                text = pattern.sub(REDACTED, text)
        if any(mask in text for mask in _MASKS):
            text = _MASKED.sub(self._masked, text)
        return text

    def optional(self, text: str | None) -> str | None:
        return None if text is None else self.text(text)

    def body(self, data: bytes) -> bytes:
        """A response body (bytes) scrubbed; the same object when it holds nothing to replace."""
        if not self._secrets:
            return data
        text = data.decode("utf-8", "replace")
        scrubbed = self.text(text)
        return data if scrubbed is text else scrubbed.encode()

    def error(self, exc: ProviderError) -> ProviderError:
        """`exc` with its message and what it carries of the exchange scrubbed (in place; returned)."""
        if self._secrets:
            exc.message = self.text(exc.message)
            exc.args = (exc.message,)
            exc.raw_request = self.optional(exc.raw_request)
            exc.raw_response = self.optional(exc.raw_response)
        return exc

    def _masked(self, match: re.Match[str]) -> str:
        word = match.group()
        visible = _VISIBLE.findall(word)
        start = visible[0] if visible and word[0] not in "*•" else ""
        end = visible[-1] if visible and word[-1] not in "*•" else ""
        for secret in self._masks:
            if (len(start) >= 3 and secret.startswith(start)) or (len(end) >= 4 and secret.endswith(end)):
                return REDACTED
        return word


NO_SECRETS = Scrubber()
