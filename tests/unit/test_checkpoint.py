from node.checkpoint import EntryCheckpoint


def test_checkpoint_moves_only_over_fully_answered_entries():
    cp = EntryCheckpoint()
    cp.add_entry("1-0", ["a", "b"])
    cp.add_entry("2-0", ["c"])
    cp.answered("c")
    assert cp.position == "0"  # entry 1 still waits for a and b
    cp.answered("a")
    cp.answered("a")  # a second report for the same order changes nothing
    assert cp.position == "0"
    cp.answered("b")
    assert cp.position == "2-0" and cp.changed and len(cp) == 0


def test_entry_of_already_known_orders_is_done_at_once():
    cp = EntryCheckpoint("5-0")
    cp.add_entry("6-0", [])
    assert cp.position == "6-0"
    cp.add_entry("7-0", ["x"])
    cp.add_entry("8-0", ["x"])  # the same order again (a replay): nothing more to wait for
    assert cp.position == "6-0"
    cp.answered("x")
    assert cp.position == "8-0"


def test_an_entry_seen_again_adds_instead_of_resetting():
    cp = EntryCheckpoint()
    cp.add_entry("1-0", ["a"])
    cp.add_entry("1-0", [])  # the same entry replayed while open: must not forget "a"
    assert cp.position == "0"
    cp.answered("a")
    assert cp.position == "1-0"


def test_held_orders_keep_the_checkpoint_until_answered():
    cp = EntryCheckpoint("5-0")
    cp.hold(["r1", "r2"])
    cp.add_entry("6-0", [])
    assert cp.position == "5-0"  # the re-driven orders come first
    cp.answered("r1")
    cp.answered("r2")
    assert cp.position == "6-0"
    cp.answered("unknown")  # a report for nothing open is ignored
