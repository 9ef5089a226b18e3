"""portal.core.collect: what a block asks for is collected, and only inside the block."""

import contextvars

import pytest

from portal.core.collect import collecting

VAR: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("test_var", default=None)


def test_the_list_is_collected_only_inside_the_block_and_blocks_nest():
    with collecting(VAR) as outer:
        VAR.get().append(1)
        with collecting(VAR) as inner:
            VAR.get().append(2)
        VAR.get().append(3)
    assert outer == [1, 3] and inner == [2]
    assert VAR.get() is None


def test_an_exception_in_the_block_still_ends_the_collecting():
    with pytest.raises(RuntimeError), collecting(VAR):
        raise RuntimeError("boom")
    assert VAR.get() is None
