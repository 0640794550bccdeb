"""Token buckets per name (a key id, a peer's routing identity): pure, clock injected, bounded in memory.

`take(name, now_ns)` spends one token of `name`'s bucket (refilled at `rate_per_sec`, at most
`burst` deep) and says whether there was one; `ready(name, now_ns)` says whether there is one
without spending it (a name with no bucket yet has a full one, and gets none stored). At most `max_names` buckets are kept: the least
recently used is dropped first (a dropped name starts again with a full bucket, so the bound costs
a flood of distinct names nothing but memory it cannot grow).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable


class TokenBuckets:
    __slots__ = ("_rate_per_ns", "_burst", "_max", "_state")

    def __init__(self, rate_per_sec: float, burst: float, max_names: int = 10_000) -> None:
        self._rate_per_ns = rate_per_sec / 1e9
        self._burst = float(burst)
        self._max = max_names
        self._state: OrderedDict[Hashable, list[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._state)

    def take(self, name: Hashable, now_ns: int) -> bool:
        state = self._state
        st = state.get(name)
        if st is None:
            if len(state) >= self._max:
                state.popitem(last=False)
            st = state[name] = [self._burst, float(now_ns)]
        else:
            state.move_to_end(name)
        if now_ns > st[1]:
            st[0] = min(self._burst, st[0] + (now_ns - st[1]) * self._rate_per_ns)
            st[1] = float(now_ns)
        if st[0] < 1.0:
            return False
        st[0] -= 1.0
        return True

    def ready(self, name: Hashable, now_ns: int) -> bool:
        st = self._state.get(name)
        if st is None:
            return True
        if now_ns > st[1]:
            st[0] = min(self._burst, st[0] + (now_ns - st[1]) * self._rate_per_ns)
            st[1] = float(now_ns)
        return st[0] >= 1.0
