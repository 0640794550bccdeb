"""The control contracts between the supervisor and the actors it runs: typed, defined once.

`EngineControl` is what every engine host answers (the native `actors.engine.EngineHost` and the
`actors.nautilus_engine.NautilusEngineHost`), checked by `tests/unit/test_engine_control_contract.py`
and by mypy where the supervisor calls it. The supervisor reaches an engine through the Ray actor
that hosts it, whose methods of the same names forward to these (`actors.ray_actors.ServiceActor`):
no method names as strings.

Every call may be retried after an ambiguous outcome (a Ray call to an actor that died may still have
run), so each is idempotent for its arguments: `promote(epoch)` and `switch_broker(..., epoch, ...)`
carry the epoch they act under; `demote()` and `resync()` converge on the same state when repeated;
`settle_stranded` asks about what is still stranded.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol, runtime_checkable

from node.config import EngineKind as EngineKind  # re-exported; defined once, with the config that names it
from node.stats import EngineStats, NautilusEngineStats
from node.errors import NodeError


class Role(StrEnum):
    """What an engine is in its group."""

    LEADER = "leader"
    STANDBY = "standby"


class ActorKind(StrEnum):
    """The kinds of actor the supervisor spawns (the key of `actors.ray_actors.ACTOR_OPTIONS`)."""

    VALIDATOR = "validator"
    ENGINE = "engine"
    BROKER = "broker"
    LEDGER = "ledger"
    SUPERVISOR = "supervisor"


class ControlRefused(NodeError):
    """An actor refused a control call it cannot carry out safely; nothing was changed."""


@runtime_checkable
class EngineControl(Protocol):
    """What the supervisor asks of an engine host."""

    def promote(self, epoch: int) -> dict:
        """Lead with `epoch`: ask the broker, adopt what it has, re-drive the rest with the same ids."""
        ...

    def demote(self) -> None:
        """Stop sending at once and follow the leader (a manual failover away from this engine)."""
        ...

    def resync(self) -> dict:
        """The broker adapter (or the validator) restarted: a leader asks the broker again and
        re-drives what it lacks; a standby does nothing."""
        ...

    def switch_broker(self, endpoint: str, epoch: int, same_account: bool) -> dict:
        """The group moved to the broker adapter at `endpoint` under `epoch`. Across accounts
        (`same_account` false), what the lost broker never answered is stranded (UNKNOWN), never
        sent to the new one blind; `stranded` in the answer counts it."""
        ...

    def settle_stranded(self, endpoint: str) -> dict:
        """The lost broker is back at `endpoint`: adopt what it has of the stranded orders, re-drive
        the rest to the current broker."""
        ...

    def cancel_open(self, strategy_id: str | None = None) -> dict:
        """The kill switch's `--cancel-open`: a leader cancels its orders not yet finished (of one
        strategy, or all); `canceled` counts them. A standby cancels nothing."""
        ...

    def stats(self) -> EngineStats | NautilusEngineStats:
        """The host's counters, a struct of `node.stats` (plain data once it leaves the Ray actor)."""
        ...


#: the EngineControl methods, in the order above (the contract test and the Ray host check these)
ENGINE_CONTROL_METHODS = ("promote", "demote", "resync", "switch_broker", "settle_stranded", "cancel_open", "stats")
