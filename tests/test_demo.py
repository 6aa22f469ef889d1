"""The README's main-job command: the demo passes end to end."""

import subprocess
import sys

from harness import ROOT


def test_the_demo_runs_add_and_remove_end_to_end_and_passes():
    result = subprocess.run([sys.executable, "-m", "b2iconik.demo"], cwd=ROOT, capture_output=True,
                            text=True, timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "DEMO PASSED" in result.stdout
    assert "kept on LucidLink: B2 copy checksum" in result.stdout
