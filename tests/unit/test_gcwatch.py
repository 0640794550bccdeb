"""node.gcwatch: collections are counted and timed; the start-up heap is frozen once settled."""

import gc

import pytest

from node.gcwatch import GcWatch, settle_after_start


@pytest.fixture
def restore_gc():
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_every_collection_is_counted_per_generation_with_its_pause():
    w = GcWatch()
    gc.callbacks.append(w)
    try:
        gc.collect(0)
        gc.collect(2)
    finally:
        gc.callbacks.remove(w)
    snap = w.snapshot()
    assert snap["gc0_collections"] >= 1 and snap["gc2_collections"] >= 1
    assert snap["gc2_pause_max_ms"] > 0.0 and snap["gc2_pause_total_ms"] >= snap["gc2_pause_max_ms"]
    assert snap["gc_pause_hist"]["count"] == sum(snap["gc%d_collections" % g] for g in range(3))


def test_settling_freezes_what_is_alive_and_sets_the_young_threshold(restore_gc):
    alive = [[i] for i in range(1_000)]  # tracked containers alive at start-up
    settle_after_start(5_000)
    assert gc.get_freeze_count() >= len(alive)
    assert gc.get_threshold()[0] == 5_000
    assert len(gc.get_objects(generation=2)) < len(alive)  # a full collection no longer walks them


def test_threshold_zero_keeps_the_interpreters(restore_gc):
    before = gc.get_threshold()
    settle_after_start(0)
    assert gc.get_threshold() == before
