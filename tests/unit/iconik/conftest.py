"""Fixtures of the iconik client's tests."""

import pytest

from iconik import RateLimiter


@pytest.fixture(autouse=True)
def fresh_shared_limiters(monkeypatch):
    """Each test starts with no shared limiters (they live for the process)."""
    monkeypatch.setattr(RateLimiter, "_shared", {})
