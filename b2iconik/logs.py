"""Structured logs: one JSON object a line, carrying the job id, never a secret.

Secrets never reach a log call by design; `Redactor` is the safety net that
blanks any registered secret (the shared secret, tokens of live jobs) that
does reach one anyway.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import threading
import time
from collections import Counter

from b2iconik.output import escape_controls

job_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("job_id", default=None)


class Redactor(logging.Filter):
    def __init__(self):
        super().__init__()
        self._secrets: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, secret: str | None) -> None:
        if secret and len(secret) >= 4:
            with self._lock:
                self._secrets[secret] += 1

    def discard(self, secret: str | None) -> None:
        """Forget one registration of `secret`; it stays hidden while others hold it."""
        with self._lock:
            if self._secrets[secret] > 1:
                self._secrets[secret] -= 1
            else:
                self._secrets.pop(secret, None)

    def scrub(self, text: str) -> str:
        with self._lock:
            secrets = list(self._secrets)
        for secret in secrets:
            text = text.replace(secret, "[redacted]")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = self.scrub(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        record.job_id = job_id_var.get()
        return True


redactor = Redactor()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        job_id = getattr(record, "job_id", None)
        if job_id:
            entry["job_id"] = job_id
        if record.exc_info:
            entry["error"] = redactor.scrub(self.formatException(record.exc_info))
        return json.dumps(entry)


class TextFormatter(logging.Formatter):
    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s %(job)s%(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """One line per message: control characters in it (a newline in a request's path or query)
        are escaped, so no text a caller sends can start a line of its own; a traceback follows as is."""
        message = record.getMessage()
        escaped = escape_controls(message)
        if escaped != message:
            record = logging.makeLogRecord({**record.__dict__, "msg": escaped, "args": None})
        job_id = getattr(record, "job_id", None)
        record.job = f"[job {escape_controls(str(job_id))}] " if job_id else ""
        return redactor.scrub(super().format(record))


def setup_logging(level: str | None = None, style: str | None = None) -> None:
    """Send the plugin's logs to stderr, once per process (LOG_LEVEL, LOG_FORMAT)."""
    root = logging.getLogger()
    if any(getattr(h, "_b2iconik", False) for h in root.handlers):
        return
    handler = logging.StreamHandler()
    handler._b2iconik = True
    handler.addFilter(redactor)
    style = (style or os.environ.get("LOG_FORMAT", "json")).lower()
    handler.setFormatter(TextFormatter() if style == "text" else JsonFormatter())
    root.addHandler(handler)
    root.setLevel((level or os.environ.get("LOG_LEVEL", "INFO")).upper())
    for noisy in ("urllib3", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
