"""A local emulator of iconik's API and storage gateway, for tests and demos."""

from .emulator import Emulator

__all__ = ["Emulator"]
