"""A leader's resync after a broker-adapter restart that did not answer is asked again (the
supervisor's `_resync_again`, over a stand-in table: no Ray)."""

from __future__ import annotations


def test_a_failed_resync_after_a_broker_restart_is_asked_again_until_answered():
    import threading
    from types import SimpleNamespace

    from actors import supervisor as sup

    lane = SimpleNamespace(name="default")
    answers = [{"error": "GetTimeoutError: busy"}, {"error": "RayActorError: restarting"}, {"role": "leader", "redriven": 3}]
    asked = []

    def resync_leaders(lanes):
        asked.append([x.name for x in lanes])
        return answers[len(asked) - 1]

    table = SimpleNamespace(lanes={"default": lane}, _stopping=threading.Event(), _resync_leaders=resync_leaders,
                            _notice=lambda text: None)
    table._resync_failed = lambda lanes, answer: sup.Supervisor._resync_failed(table, lanes, answer)
    event: dict = {}
    saved = sup._RESYNC_EVERY_S
    sup._RESYNC_EVERY_S = 0.0
    try:
        sup.Supervisor._resync_again(table, [lane], event)  # type: ignore[arg-type]
    finally:
        sup._RESYNC_EVERY_S = saved
    assert asked == [["default"]] * 3 and event == {"resync_retries": 3, "resync_failed": []}
