"""`python -m b2iconik bench`: the benchmark (bench/benchmark.py), which runs from a checkout only.

It serves the checkout's plugin under gunicorn and writes bench-results/ there,
so an installed package, which has no bench/, refuses it with exit 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

from b2iconik import cli

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    return cli.run_guarded(lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    if not (ROOT / "bench" / "benchmark.py").is_file():
        raise cli.UsageError("the benchmark runs from a checkout of b2-iconik-plugin: in the checkout, run "
                             "python -m b2iconik bench (or python -m bench.benchmark)")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from bench import benchmark

    return benchmark.main(argv)
