"""Text from outside made storable: response bodies, exception messages, server replies.

PostgreSQL's `text` and `jsonb` refuse the NUL character, and UTF-8 cannot
encode a lone surrogate (which Python strings may hold); a write carrying either
fails every time it is tried. Such text is repaired and capped before it is
stored, so that it can never be the reason a job's outcome is not recorded.
"""

from __future__ import annotations

import re

REPLACEMENT = "\ufffd"
_SURROGATE = re.compile("[\ud800-\udfff]")  # one each: UTF-8 cannot encode any
ELLIPSIS = "\u2026"


def storable(text: str, limit: int) -> str:
    """`text` with NUL and lone surrogates replaced, at most `limit` characters long."""
    text = _SURROGATE.sub(REPLACEMENT, text.replace("\x00", REPLACEMENT))
    if len(text) > limit:
        text = text[: max(limit - 1, 0)] + ELLIPSIS
    return text


def first_line(text: str) -> str:
    return text.strip().split("\n", 1)[0]
