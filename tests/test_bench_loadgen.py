"""The load generator must not pause inside a timed window: its own garbage collection would be
charged to the server as latency."""

import gc

import pytest

from bench.loadgen import _no_client_pauses


@pytest.fixture
def gc_state():
    was = gc.isenabled()
    yield
    gc.unfreeze()
    if was:
        gc.enable()
    else:
        gc.disable()


def test_no_automatic_collection_inside_a_window_and_it_is_restored_after(gc_state):
    gc.enable()
    gc.unfreeze()  # another test (the WSGI module) may have frozen objects already
    assert gc.get_freeze_count() == 0
    with _no_client_pauses():
        assert not gc.isenabled()
        assert gc.get_freeze_count() > 0  # what existed before is never walked again
    assert gc.isenabled()


def test_restored_even_when_the_load_fails(gc_state):
    gc.enable()
    with pytest.raises(RuntimeError), _no_client_pauses():
        raise RuntimeError("sender failed")
    assert gc.isenabled()


def test_a_caller_that_had_collection_off_keeps_it_off(gc_state):
    gc.disable()
    with _no_client_pauses():
        pass
    assert not gc.isenabled()
