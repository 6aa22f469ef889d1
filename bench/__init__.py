"""Benchmarks of the plugin against the local iconik emulator: `python -m bench.benchmark`."""
