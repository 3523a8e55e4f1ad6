"""Server-supplied text made safe to show: one line, printable, and bounded. Pure.

Whoever creates a RaidiamClient chooses the issuer, and so chooses what answers: an `issuer` of
500 KB or an `error_description` that forges a log line must not reach a status, an Event or the
log as it came. Every string a server sends passes through `server_text` before it is quoted.
"""

from __future__ import annotations

import json

#: an OAuth `error` code (every real one is a short word)
ERROR_CODE_LIMIT = 64
#: a value from a discovery document or token response quoted in a message (issuer, token_type)
SERVER_VALUE_LIMIT = 100
#: the server's `error_description`: kept whole where there is room (conditions, the CLI), since it
#: often names what the server wanted (a claim, a URL)
ERROR_DESCRIPTION_LIMIT = 1200
#: characters of a URL quoted in a message (an issuer or endpoint; real ones are far shorter)
URL_LIMIT = 200
#: bytes of an Event's note (the events.k8s.io limit); the server's text is cut to fit, never a hint
EVENT_NOTE_LIMIT = 1024
#: a word boundary this close to the limit is worth cutting at; further back, cut mid-word
_WORD_SEARCH = 40
ELLIPSIS = "…"
_SENTENCE_END = (".", "!", "?", "…")


def server_text(value: object, *, limit: int = SERVER_VALUE_LIMIT) -> str:
    """`value` as one printable line of at most `limit` characters (plus an ellipsis when cut).

    Control characters and line breaks become spaces and runs of them one space, so no forged
    log line or terminal escape survives. A longer text is cut at the last word boundary before
    the limit (or at the limit, when no boundary is near) and ends in an ellipsis. Anything that
    is not a string is shown as compact JSON first.
    """
    text = value if isinstance(value, str) else _as_json(value)
    # Cut the raw text first: a hostile value may be megabytes long.
    text = text[: limit * 4 + 1]
    cleaned = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    if len(cleaned) <= limit:
        return cleaned
    cut = cleaned[:limit]
    if cleaned[limit] != " ":  # mid-word: back to the last boundary, if one is near
        boundary = cut.rfind(" ", max(0, limit - _WORD_SEARCH))
        if boundary > 0:
            cut = cut[:boundary]
    return cut.rstrip(" .,;:") + ELLIPSIS


def quoted_server_text(value: object, *, limit: int = SERVER_VALUE_LIMIT) -> str:
    """`server_text` in quotes when it was a string, so an empty or odd value is still visible."""
    text = server_text(value, limit=limit)
    return repr(text) if isinstance(value, str) else text


def cut_bytes(text: str, limit: int) -> str:
    """`text` in at most `limit` UTF-8 bytes: cut at a word boundary near the end, with an
    ellipsis, when it is longer."""
    encoded = text.encode()
    if len(encoded) <= limit:
        return text
    head = encoded[: max(limit - len(ELLIPSIS.encode()), 0)].decode(errors="ignore")
    boundary = head.rfind(" ", max(0, len(head) - _WORD_SEARCH))
    if boundary > 0:
        head = head[:boundary]
    return head.rstrip(" .,;:") + ELLIPSIS


def sentence(text: str) -> str:
    """`text` ending in exactly one full stop (or its own ?, ! or …): "failed." stays "failed."."""
    text = text.rstrip()
    return text if text.endswith(_SENTENCE_END) else text + "."


def sentences(*parts: str) -> str:
    """Join sentences with single spaces, each ending in one full stop: a server's description
    and the hints after it read as one text, without ".." between them."""
    return " ".join(sentence(part) for part in parts if part.strip())


def byte_size(size: int) -> str:
    """A size for a message, as a user reads it: "812 bytes", "200 KiB", "4.3 MiB"."""
    if size < 1024:
        return f"{size} bytes"
    if round(size / 1024) < 1024:
        return f"{size / 1024:.0f} KiB"
    return f"{size / (1024 * 1024):.1f} MiB"


def _as_json(value: object) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return type(value).__name__
