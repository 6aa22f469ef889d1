"""The report page in a real browser: headless Chromium (Debian's package `chromium`).

`screenshot` makes a PNG of the whole page (the demo keeps one with `--keep`);
`dump_dom` gives the page's DOM after it was laid out and its scripts ran (the
page test measures, in a copy of the page, what a person sees). The page itself
has no script: `page_height` runs one in a copy, to size the screenshot.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

NAMES = ("chromium", "chromium-browser")
"""What Debian (`apt-get install chromium`) and some other systems call it."""
TIMEOUT = 120
"""Seconds one Chromium run may take (it starts in about 2 s on an idle machine)."""
HEIGHT_SCRIPT = ("<script>document.body.setAttribute('data-height', "
                 "Math.ceil(document.documentElement.scrollHeight));</script>")


class BrowserMissing(RuntimeError):
    pass


def find_chromium() -> str | None:
    """The path of a Chromium, or None."""
    for name in NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _run(page: Path, width: int, height: int, *options: str) -> str:
    browser = find_chromium()
    if browser is None:
        raise BrowserMissing("no Chromium on PATH (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="b2iconik-chromium-") as profile:
        done = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                               "--no-first-run", f"--user-data-dir={profile}", f"--window-size={width},{height}",
                               *options, page.resolve().as_uri()],
                              capture_output=True, text=True, timeout=TIMEOUT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"chromium exited {done.returncode}: {done.stderr.strip()[-500:]}")
    return done.stdout


def dump_dom(page: Path, width: int = 1200, height: int = 900) -> str:
    """The DOM of `page` (a file) once Chromium has laid it out at this window size and run its scripts."""
    return _run(page, width, height, "--dump-dom")


def with_script(html: str, script: str) -> str:
    """A copy of a page with `script` (a <script> element) run last, after layout."""
    return html.replace("</body>", script + "</body>", 1) if "</body>" in html else html + script


def page_height(page: Path, width: int) -> int:
    """The height of the whole page at this width, in CSS pixels (measured in a copy of it)."""
    with tempfile.TemporaryDirectory(prefix="b2iconik-page-") as folder:
        probe = Path(folder) / "page.html"
        probe.write_text(with_script(page.read_text(encoding="utf-8"), HEIGHT_SCRIPT), encoding="utf-8")
        found = re.search(r'data-height="(\d+)"', dump_dom(probe, width))
    if not found:
        raise RuntimeError("chromium did not lay the page out")
    return int(found.group(1))


def screenshot(page: Path, png: Path, width: int = 1200, max_height: int = 6000) -> Path:
    """A PNG of the whole page (up to `max_height` pixels), as Chromium shows it at this width."""
    height = min(max_height, page_height(page, width) + 8)
    _run(page, width, height, f"--screenshot={png.resolve()}")
    if not png.is_file():
        raise RuntimeError(f"chromium wrote no screenshot to {png}")
    return png
