"""The plugin's JSON logs, with the `severity` field Cloud Logging reads.

Cloud Functions send stderr lines to Cloud Logging; a JSON line becomes a
structured entry, and its `severity` sets the entry's level. LOG_FORMAT=text
gives plain lines for local runs, as for the Flask app.
"""

from __future__ import annotations

import json
import logging

from b2iconik.logs import JsonFormatter, setup_logging


class CloudJsonFormatter(JsonFormatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = json.loads(super().format(record))
        entry["severity"] = record.levelname
        return json.dumps(entry)


def setup_cloud_logging() -> None:
    setup_logging()
    for handler in logging.getLogger().handlers:
        if getattr(handler, "_b2iconik", False) and type(handler.formatter) is JsonFormatter:
            handler.setFormatter(CloudJsonFormatter())
