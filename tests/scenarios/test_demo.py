"""The README's main-job command: the demo passes end to end, with the report and a cleanup plan."""

import contextlib
import shutil
import socket
import subprocess
import sys

from b2iconik.config import DEFAULT_METRICS_PORT
from tests.helpers.harness import ROOT


def test_the_demo_runs_add_report_cleanup_plan_remove_report_and_passes(tmp_path):
    with contextlib.ExitStack() as stack:  # a plugin already on this host holds the default metrics port
        held = stack.enter_context(socket.socket())
        with contextlib.suppress(OSError):  # else something else holds it: as good
            held.bind(("127.0.0.1", DEFAULT_METRICS_PORT))
            held.listen()
        result = subprocess.run([sys.executable, "-m", "b2iconik", "demo", "--keep", str(tmp_path)], cwd=ROOT,
                                capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "cannot serve metrics" not in result.stderr and "Address already in use" not in result.stderr
    out = result.stdout
    assert "the 2 jobs' ends and durations are counted" in out
    assert "DEMO PASSED" in out and "[WRONG]" not in out
    assert "kept on LucidLink: B2 copy checksum" in out
    assert out.count("$ python -m b2iconik report") == 2 and "$ python -m b2iconik cleanup --until-below" in out
    assert out.index("report-before-remove") < out.index("Dry run: nothing was changed") \
        < out.index(">>> Remove from LucidLink") < out.index("report-after-remove")
    for label in ("before-remove", "after-remove"):
        page = (tmp_path / f"report-{label}.html").read_text()
        assert "<svg" in page and "<script" not in page.lower()
    if shutil.which("chromium"):  # --keep keeps a screenshot of the report page
        assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
