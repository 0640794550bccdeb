"""A broker account's request budget, kept in Redis so every adapter of the account shares it.

Schwab allows 120 order requests a minute and 4,000 a day per account; IBKR 50 messages a second
per connection. Whoever spends (the epoch holder's adapter, then after a failover the next one)
spends from the same counters, so a failover does not reset the budget. The window counters are
fixed windows keyed by their start (`<prefix>:w:<window no.>`, `<prefix>:d:<day no.>`) and expire
with them; one Lua script checks both and takes one unit only when both have room, atomically.

`take()` answers GRANTED (0), the milliseconds until the window has room again (> 0), or
DAY_SPENT (-1): a request over budget is never sent; the caller waits or refuses it with
BROKER_RATE_LIMITED.
"""

from __future__ import annotations

import time
from typing import Callable

import redis

GRANTED = 0
DAY_SPENT = -1

_TAKE = """
local w = tonumber(redis.call('GET', KEYS[1]) or '0')
local d = tonumber(redis.call('GET', KEYS[2]) or '0')
if d >= tonumber(ARGV[2]) then return -1 end
if w >= tonumber(ARGV[1]) then return tonumber(ARGV[3]) end
redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
return 0
"""

_DAY_MS = 86_400_000


class RequestBudget:
    """`per_window` requests per `window_ms` and `per_day` per UTC day, for one account."""

    def __init__(
        self, client: redis.Redis, prefix: str, per_window: int, window_ms: int, per_day: int,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._per_window = per_window
        self._window_ms = window_ms
        self._per_day = per_day
        self._clock_ms = clock_ms
        self._script = client.register_script(_TAKE)
        self.granted = 0
        self.refused = 0

    def take(self) -> int:
        """GRANTED, ms to wait for the next window, or DAY_SPENT."""
        now = self._clock_ms()
        w = now // self._window_ms
        d = now // _DAY_MS
        wait = (w + 1) * self._window_ms - now
        keys = (self._prefix + ":w:" + str(w), self._prefix + ":d:" + str(d))
        answer = int(self._script(keys=keys, args=(self._per_window, self._per_day, max(wait, 1),
                                                   self._window_ms * 2, _DAY_MS * 2)))
        if answer == GRANTED:
            self.granted += 1
        else:
            self.refused += 1
        return answer

    def used(self) -> tuple[int, int]:
        """(requests in this window, requests today) as Redis holds them."""
        now = self._clock_ms()
        w, d = self._redis.mget(
            self._prefix + ":w:" + str(now // self._window_ms), self._prefix + ":d:" + str(now // _DAY_MS)
        )
        return int(w or 0), int(d or 0)
