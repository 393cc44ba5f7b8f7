"""Stream entries as Redis returns them (bytes), decoded one at a time.

Streams are read with a client that does not decode replies: one entry whose bytes are not UTF-8 would
otherwise make the whole read raise, and the worker would crash on it forever. Each entry is decoded on
its own; one that cannot be is a poison entry, dead-lettered with its raw bytes (base64) kept.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass

from spr.shared.errors import SprError

# The fields the queue writes on every entry of a pipeline stream (see scripts.PUBLISH).
ITEM_ID_FIELD = "item_id"
DATA_FIELD = "data"


class UndecodableEntry(SprError):  # noqa: N818 - the name says what the entry is
    """A stream entry whose fields are not UTF-8 text, or lack the queue's fields."""


@dataclass(frozen=True)
class DecodedEntry:
    item_id: str
    data: str


def text(value: bytes | str | None) -> str:
    """Bytes from Redis as text, with undecodable bytes replaced (for ids, names and display only)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return value.decode("utf-8", errors="replace")


def decode_fields(fields: Mapping[bytes, bytes] | None) -> DecodedEntry:
    """The entry's item id and payload; raises UndecodableEntry naming what is wrong."""
    if not fields:
        raise UndecodableEntry("entry has no fields (expected item_id and data)")
    decoded: dict[str, str] = {}
    for key, value in fields.items():
        try:
            name = key.decode("utf-8") if isinstance(key, bytes) else str(key)
        except UnicodeDecodeError:
            raise UndecodableEntry(f"field name {text(key)!r} is not UTF-8") from None
        try:
            decoded[name] = value.decode("utf-8") if isinstance(value, bytes) else str(value)
        except UnicodeDecodeError as exc:
            raise UndecodableEntry(
                f"field {name!r} is not UTF-8 (byte {exc.start} of {len(value)}): the producer must "
                "publish JSON text"
            ) from None
    missing = [field for field in (ITEM_ID_FIELD, DATA_FIELD) if field not in decoded]
    if missing:
        raise UndecodableEntry(
            f"entry lacks field(s) {', '.join(missing)} (has {', '.join(sorted(decoded)) or 'none'}): "
            "publish with Queue.publish"
        )
    return DecodedEntry(item_id=decoded[ITEM_ID_FIELD], data=decoded[DATA_FIELD])


def raw_fields_b64(fields: Mapping[bytes, bytes] | None) -> str:
    """The entry's fields, names and values each base64, as one JSON object (byte-exact, printable)."""
    encoded = {_b64(key): _b64(value) for key, value in (fields or {}).items()}
    return json.dumps(encoded, separators=(",", ":"))


def fields_from_b64(raw: str) -> dict[bytes, bytes]:
    """The inverse of :func:`raw_fields_b64`."""
    loaded = json.loads(raw)
    return {base64.b64decode(key): base64.b64decode(value) for key, value in loaded.items()}


def _b64(value: bytes | str) -> str:
    data = value if isinstance(value, bytes) else str(value).encode()
    return base64.b64encode(data).decode("ascii")
