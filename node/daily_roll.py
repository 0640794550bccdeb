"""The daily roll that bounds the per-order maps of brokers and engines (pure logic, clock injected).

An adapter or engine remembers every order it saw (who hears its reports, when it was last active,
whether it was sent, its finished state for dedupe). Over days of running those maps would only
grow. Once a day, at `daily_roll_hour_utc`, the finished orders are forgotten, but only those that
finished before the previous roll: a finished order is kept at least a full day (a late report, a
recovery asking about it, a duplicate submit within the day still meet it). Open orders are never
forgotten: only what is handed to `Finished.add` can be.
"""

from __future__ import annotations

_DAY_NS = 86_400 * 1_000_000_000
_HOUR_NS = 3_600 * 1_000_000_000


def next_roll_ns(now_ns: int, hour_utc: int) -> int:
    """The first time strictly after `now_ns` the UTC clock reads `hour_utc`:00."""
    if not 0 <= hour_utc <= 23:
        raise ValueError("roll hour must be 0..23, not " + repr(hour_utc))
    day_start = now_ns - now_ns % _DAY_NS
    at = day_start + hour_utc * _HOUR_NS
    return at if at > now_ns else at + _DAY_NS


class DailyRoll:
    """`due(now)` is True once each time the clock passes the roll hour."""

    def __init__(self, hour_utc: int, now_ns: int) -> None:
        self.hour_utc = hour_utc
        self.next_ns = next_roll_ns(now_ns, hour_utc)
        self.rolls = 0

    def due(self, now_ns: int) -> bool:
        if now_ns < self.next_ns:
            return False
        self.next_ns = next_roll_ns(now_ns, self.hour_utc)
        self.rolls += 1
        return True


class Finished:
    """Finished orders in the order they finished, by roll generation: `roll()` forgets (returns)
    those that finished before the previous roll. An order that moves again (a late fill) is
    `add`ed again and keeps another day; one that reopens is `discard`ed."""

    def __init__(self) -> None:
        self._gen = 0
        self._at: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._at)

    def __contains__(self, client_order_id: object) -> bool:
        return client_order_id in self._at

    def add(self, client_order_id: str) -> None:
        at = self._at
        at.pop(client_order_id, None)
        at[client_order_id] = self._gen

    def discard(self, client_order_id: str) -> None:
        self._at.pop(client_order_id, None)

    def roll(self) -> list[str]:
        """A roll: the ids finished before the previous one (forget them everywhere)."""
        self._gen += 1
        keep_from = self._gen - 1
        at = self._at
        out = []
        for coid, gen in at.items():  # oldest first: generations never decrease along the dict
            if gen >= keep_from:
                break
            out.append(coid)
        for coid in out:
            del at[coid]
        return out
