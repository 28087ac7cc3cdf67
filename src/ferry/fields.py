"""The vocabulary of validated fields: patterns said in words, tenant ids, field errors.

Patterns end in `$(?!\n)`: msgspec applies them with `re.search`, where a bare `$`
also matches before a trailing newline; the lookahead reads the same in Python and
in the OpenAPI document's ECMA regex dialect.
"""

from __future__ import annotations

from typing import Annotated, Any

from msgspec import Meta

# What each pattern expects, in words: error messages say this instead of the regex.
PATTERN_WORDS: dict[str, str] = {}


def pattern(regex: str, words: str) -> str:
    PATTERN_WORDS[regex] = words
    return regex


def in_words(message: str) -> str:
    """A validation message with the regex it quotes said in words instead:
    msgspec says "Expected `str` matching regex '^[A-Za-z0-9]...'"."""
    if "matching regex" not in message:
        return message
    for regex, words in PATTERN_WORDS.items():
        message = message.replace(f"`str` matching regex {regex!r}", words)
    return message


TENANT_ID_WORDS = "1 to 100 letters, digits and . _ : - (starting with a letter or digit)"
TENANT_ID_PATTERN = pattern(
    r"^[A-Za-z0-9][A-Za-z0-9._:-]*$(?!\n)", f"a tenant id: {TENANT_ID_WORDS}"
)
TenantId = Annotated[
    str,
    Meta(min_length=1, max_length=100, pattern=TENANT_ID_PATTERN, description=TENANT_ID_WORDS),
]


def field_error(field: str, message: str) -> ValueError:
    """A `__post_init__` check's error about one of the struct's fields: msgspec reports
    it at the struct, and the API's error handler moves it to the field."""
    return ValueError(f"`{field}`: {message}")


def nests_deeper_than(value: Any, limit: int) -> bool:
    """Whether lists and objects nest more than `limit` levels deep (iteratively: a
    hostile body must not exhaust the stack)."""
    stack = [(value, 0)]
    while stack:
        item, level = stack.pop()
        children = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        )
        if children is None:
            continue
        if level >= limit:
            return True
        stack.extend((child, level + 1) for child in children)
    return False
