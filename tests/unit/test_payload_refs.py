"""The reference step that stores a long text once: every occurrence replaced, decoys with the same start left."""

from __future__ import annotations

import orjson

from lsd.inference.recording import REF, _referenced


def quoted(text: str) -> str:
    return orjson.dumps(text).decode()


def test_every_occurrence_is_replaced_and_decoys_are_kept() -> None:
    text = "x" * 70 + "the long prompt " * 20
    decoy = quoted(text)[:-5] + 'zz"'  # the same first 64+ characters, another text
    raw = f'{{"a":{decoy},"b":{quoted(text)},"c":{quoted(text)}}}'
    marker = f'"{REF}m{REF}"'
    assert _referenced(raw, [("m", text)]) == f'{{"a":{decoy},"b":{marker},"c":{marker}}}'


def test_absent_texts_and_marked_raws_are_left_alone() -> None:
    text = "y" * 300
    assert _referenced('{"a":"' + "y" * 299 + '"}', [("m", text)]) is None
    assert _referenced(f'{{"a":{quoted(text)},"r":"{REF}"}}', [("m", text)]) is None


def test_a_body_kept_as_bytes_gets_the_same_references() -> None:
    """A provider's JSON body stays the bytes sent until recording: searched as bytes, the same places found."""
    text = "é☃ " * 40 + "x" * 70 + "the long prompt " * 20  # multi-byte characters: bytes and characters differ
    other = "z" * 300
    decoy = quoted(text)[:-5] + 'zz"'
    raw = f'{{"a":{decoy},"b":{quoted(text)},"c":{quoted(other)},"d":{quoted(text)}}}'
    texts = [("m", text), ("n", other), ("absent", "q" * 300)]
    assert _referenced(raw.encode(), texts) == _referenced(raw, texts)
    assert _referenced(raw.encode(), texts) == f'{{"a":{decoy},"b":"{REF}m{REF}","c":"{REF}n{REF}","d":"{REF}m{REF}"}}'
    assert _referenced(raw.encode(), [("absent", "q" * 300)]) is None
    assert _referenced(f'{{"a":{quoted(text)},"r":"{REF}"}}'.encode(), [("m", text)]) is None
