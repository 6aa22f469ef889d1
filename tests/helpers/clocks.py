"""Clocks the tests set by hand, for the code that takes a `clock` (and a `sleep`)."""

from __future__ import annotations


class Clock:
    """Calling it gives `now`, which only the test moves."""

    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeClock(Clock):
    """A Clock that a caller can sleep on: each sleep is recorded and, when `sleep_advances`,
    moves the time on by as much."""

    def __init__(self, now: float = 1000.0, sleep_advances: bool = True):
        super().__init__(now)
        self.slept: list[float] = []
        self.sleep_advances = sleep_advances

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if self.sleep_advances:
            self.now += seconds
