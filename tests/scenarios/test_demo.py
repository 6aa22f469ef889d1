"""The README's main-job command: the demo passes end to end, with the report and a cleanup plan."""

import subprocess
import sys

from tests.helpers.harness import ROOT


def test_the_demo_runs_add_report_cleanup_plan_remove_report_and_passes(tmp_path):
    result = subprocess.run([sys.executable, "-m", "b2iconik", "demo", "--keep", str(tmp_path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "DEMO PASSED" in out and "[WRONG]" not in out
    assert "kept on LucidLink: B2 copy checksum" in out
    assert out.count("$ python -m b2iconik report") == 2 and "$ python -m b2iconik cleanup --until-below" in out
    assert out.index("report-before-remove") < out.index("Dry run: nothing was changed") \
        < out.index(">>> Remove from LucidLink") < out.index("report-after-remove")
    for label in ("before-remove", "after-remove"):
        page = (tmp_path / f"report-{label}.html").read_text()
        assert "<svg" in page and "<script" not in page.lower()
