"""The strategy router: which engine group takes a signal (pure logic, no I/O).

Routes are tried in order; the first whose strategies (exact ids, or prefixes ending in `*`) and
symbols both match wins (an empty list matches everything). No match: the first group, or None
when the config says `reject_unrouted` (the validator refuses the signal with NO_ROUTE).

Every engine builds the same router from the same config, keeps only the signals routed to its own
group, and so needs no routing decision carried in the signal log.
"""

from __future__ import annotations

from node.config import NodeConfig, RouteConfig

_CACHE_MAX = 100_000


class _Route:
    __slots__ = ("group", "exact", "prefixes", "symbols")

    def __init__(self, route: RouteConfig) -> None:
        self.group = route.group
        self.exact = frozenset(s for s in route.strategies if not s.endswith("*"))
        self.prefixes = tuple(s[:-1] for s in route.strategies if s.endswith("*"))
        self.symbols = frozenset(route.symbols)

    def matches(self, strategy_id: str, symbol: str) -> bool:
        if self.symbols and symbol not in self.symbols:
            return False
        if not self.exact and not self.prefixes:
            return True
        return strategy_id in self.exact or strategy_id.startswith(self.prefixes)


class Router:
    def __init__(self, routes: list[RouteConfig], groups: list[str], reject_unrouted: bool = False) -> None:
        self._routes = [_Route(r) for r in routes]
        self.groups = list(groups)
        self._fallback = None if reject_unrouted else self.groups[0]
        #: one group and nothing refused: every signal goes there, no lookup needed
        self.single = len(self.groups) == 1 and not reject_unrouted
        self._cache: dict[tuple[str, str], str | None] = {}

    @classmethod
    def from_config(cls, cfg: NodeConfig) -> "Router":
        return cls(cfg.routes, [g.name for g in cfg.group_list()], cfg.reject_unrouted)

    def group_of(self, strategy_id: str, symbol: str) -> str | None:
        if self.single:
            return self.groups[0]
        key = (strategy_id, symbol)
        found = self._cache.get(key, "")
        if found != "":
            return found
        group = next((r.group for r in self._routes if r.matches(strategy_id, symbol)), self._fallback)
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[key] = group
        return group
