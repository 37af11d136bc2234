"""The engine's timers: it asks the shell to arm or cancel one by key, and is told when one fires
(`Engine.on_timer(key)`). A key is armed at most once: arming it again replaces the earlier deadline."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Protocol


class Timers(Protocol):
    def arm(self, key: Hashable, delay: float) -> None:
        """Fire `key` in `delay` seconds (replacing an earlier arming of the same key)."""

    def cancel(self, key: Hashable) -> None:
        """Do not fire `key` (nothing if it is not armed)."""


class ManualTimers:
    """Timers for tests and tools: armed keys are kept with their delays; nothing fires by itself."""

    def __init__(self) -> None:
        self.armed: dict[Hashable, float] = {}

    def arm(self, key: Hashable, delay: float) -> None:
        self.armed[key] = delay

    def cancel(self, key: Hashable) -> None:
        self.armed.pop(key, None)
