"""The plugin's gunicorn.conf.py, with its second worker slow to boot.

That worker stands still for SLOW_BOOT_SECONDS right after its fork, before gunicorn
has set up its signal handlers, as a worker may on a loaded machine; it first writes its
pid to SLOW_BOOT_MARK, so that a test knows when to send its stop signal.
"""

import os
import runpy
import time
from pathlib import Path

_plugin = runpy.run_path(str(Path(__file__).resolve().parents[2] / "gunicorn.conf.py"))
globals().update({name: value for name, value in _plugin.items() if not name.startswith("__")})


def post_fork(server, worker):
    if "post_fork" in _plugin:
        _plugin["post_fork"](server, worker)
    if worker.age == 2:
        Path(os.environ["SLOW_BOOT_MARK"]).write_text(str(os.getpid()))
        time.sleep(float(os.environ.get("SLOW_BOOT_SECONDS", "3")))
