"""The paper venue's price process: one geometric random walk per symbol, stepped by tick index.

The path is a function of the seed and the tick index only. Each symbol draws its log-returns from
its own numpy stream in fixed blocks, and the log price is summed in one fixed order (left to
right, in float64), whether the walk moves one tick at a time in Python or a chunk at a time with
`np.cumsum`; so polling the venue often or rarely lands on the same bits, and order flow never
moves the price. The one exception is a jump of more than `MAX_EXACT_TICKS` ticks at once (days of
idle clock), which is taken as a single draw of the same variance to bound the work.
"""

from __future__ import annotations

import math

import numpy as np

#: increments drawn per refill of a symbol's buffer
BLOCK = 4_096
#: at most this many ticks are materialised in one array
CHUNK = 65_536
#: a longer step than this is one draw of variance `n` (bounded work; the exact path is kept below it)
MAX_EXACT_TICKS = 2_000_000
#: below this many ticks a step is a plain Python loop (cheaper than numpy's per-call overhead)
_LOOP_TICKS = 32


def symbol_streams(seed: int, n_symbols: int) -> tuple[np.random.Generator, list[np.random.Generator]]:
    """Independent numpy generators from one seed: one for venue decisions, one per symbol."""
    children = np.random.SeedSequence(seed).spawn(n_symbols + 1)
    return np.random.Generator(np.random.PCG64(children[0])), [
        np.random.Generator(np.random.PCG64(c)) for c in children[1:]
    ]


class PricePath:
    """A geometric random walk: log mid moves by `volatility_bps * 1e-4 * N(0, 1)` per tick.

    `mid` and `log_mid` are the values at the current tick; `step(n)` and `path(n)` move `n` ticks on.
    """

    __slots__ = ("log_mid", "mid", "_vol", "_rng", "_buf", "_pos")

    def __init__(self, price: float, volatility_bps: float, rng: np.random.Generator) -> None:
        self.log_mid = math.log(price)
        self.mid = price
        self._vol = volatility_bps * 1e-4
        self._rng = rng
        self._buf = np.empty(0)
        self._pos = 0

    def step(self, n: int) -> None:
        """Move the walk `n` ticks on, keeping only where it ends."""
        if n <= 0:
            return
        if n > MAX_EXACT_TICKS:
            self._set(self.log_mid + self._vol * math.sqrt(n) * float(self._rng.standard_normal()))
            return
        if n <= _LOOP_TICKS:
            log_mid = self.log_mid
            for _ in range(n):
                if self._pos == self._buf.shape[0]:
                    self._refill()
                log_mid = float(log_mid + self._buf[self._pos])
                self._pos += 1
            self._set(log_mid)
            return
        while n > 0:
            k = min(n, CHUNK)
            self._set(float(self._cumulate(k)[-1]))
            n -= k

    def path(self, n: int) -> np.ndarray:
        """Move the walk `n` ticks on (1 <= n <= CHUNK) and return the log mid after each tick."""
        logs = self._cumulate(n)
        self._set(float(logs[-1]))
        return logs

    def reset(self, price: float) -> None:
        """Go on from `price` (a restored venue: its last traded price), the draws unchanged."""
        self._set(math.log(price))

    # ---------------------------------------------------------------- private

    def _set(self, log_mid: float) -> None:
        self.log_mid = log_mid
        self.mid = math.exp(log_mid)

    def _refill(self) -> None:
        buf = self._rng.standard_normal(BLOCK)
        buf *= self._vol
        self._buf = buf
        self._pos = 0

    def _cumulate(self, n: int) -> np.ndarray:
        """The next `n` log mids, summed left to right from the current one (same bits as the loop)."""
        out = np.empty(n + 1)
        out[0] = self.log_mid
        filled = 1
        while filled <= n:
            if self._pos == self._buf.shape[0]:
                self._refill()
            k = min(n + 1 - filled, self._buf.shape[0] - self._pos)
            out[filled : filled + k] = self._buf[self._pos : self._pos + k]
            self._pos += k
            filled += k
        np.cumsum(out, out=out)
        return out[1:]
