"""Thought signatures on the Gemini route: how another vendor's signed thought survives a Gemini client's history.

A Gemini client keeps a `thoughtSignature` on the part it came on (a function call, a text) and sends it back as is;
Gemini CLI drops `thought: true` parts from its history. Gemini's own signatures go out and come back unchanged.
Another vendor's signed thought (Claude's thinking, whose text and signature must come back together; OpenAI's
encrypted reasoning) goes out as a signature of LSD's own on the next part: base64url of a small JSON object with the
provider type, the thought's text and its signature, so that the thought comes back whole and goes only to that
vendor again (lsd.inference.routing). The google-genai SDKs treat the signature as bytes in base64 (and send it back
in base64url), so it is base64 too.
"""

from __future__ import annotations

import base64
import binascii

import orjson

from lsd.types import Thought

GEMINI_BODY_TYPES = frozenset({"google_ai_studio_gemini", "gcp_vertex_gemini"})
GEMINI_TYPE = "google_ai_studio_gemini"  # a signature a Gemini client sent back is Gemini's (its family)
_MARK = b'{"lsd":1,'  # a wrapped signature's decoded bytes begin with it (Gemini's own are binary)


def is_geminis(provider_type: str | None) -> bool:
    """Whether a thought of `provider_type` carries Gemini's own signature (or one of no known vendor)."""
    return provider_type is None or provider_type in GEMINI_BODY_TYPES


def wrapped(thoughts: list[Thought]) -> str:
    """Other vendors' thoughts (those before one part) as one signature for a Gemini client to keep."""
    data = {
        "lsd": 1,
        "thoughts": [{"type": t.provider_type, "text": t.text, "signature": t.signature} for t in thoughts],
    }
    return base64.urlsafe_b64encode(orjson.dumps(data)).decode("ascii")


def unwrapped(signature: str) -> list[Thought] | None:
    """The thoughts a signature of LSD's own holds; None for any other signature (Gemini's)."""
    if not signature.startswith("eyJsc2QiOjEs"):  # base64 of _MARK: most signatures are Gemini's, decoded never
        return None
    try:
        raw = base64.urlsafe_b64decode(signature.replace("+", "-").replace("/", "_") + "=" * (-len(signature) % 4))
        data = orjson.loads(raw) if raw.startswith(_MARK) else None
    except (binascii.Error, ValueError):
        return None
    items = data.get("thoughts") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return None
    thoughts = []
    for item in items:
        if not isinstance(item, dict):
            return None
        kind, text, sig = item.get("type"), item.get("text"), item.get("signature")
        if not all(f is None or isinstance(f, str) for f in (kind, text, sig)):
            return None
        thoughts.append(Thought(text, sig, provider_type=kind))
    return thoughts
