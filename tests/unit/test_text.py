"""Text from outside made storable: PostgreSQL takes it, and it stays within its cap."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ferry.text import ELLIPSIS, REPLACEMENT, storable


def test_nul_and_lone_surrogates_become_one_replacement_each() -> None:
    assert storable("a\x00b\ud800c\udfffd", 100) == f"a{REPLACEMENT}b{REPLACEMENT}c{REPLACEMENT}d"


def test_long_text_is_cut_with_an_ellipsis() -> None:
    assert storable("abcdef", 4) == f"abc{ELLIPSIS}"


@given(st.text(alphabet=st.characters(codec=None)), st.integers(min_value=1, max_value=50))
def test_whatever_comes_in_encodes_and_fits(text: str, limit: int) -> None:
    stored = storable(text, limit)
    stored.encode("utf-8")  # no surrogate left
    assert "\x00" not in stored
    assert len(stored) <= limit
