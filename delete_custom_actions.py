#!/usr/bin/env python3
"""Delete the plugin's custom actions for one endpoint from iconik.

    delete_custom_actions.py <endpoint> [formats] [--dry-run]
    delete_custom_actions.py --endpoint E [--formats F] [--dry-run]
    delete_custom_actions.py --list [endpoint]

Only actions that point at <endpoint>/add, /remove or /check are deleted; with
formats, only those made for exactly those formats. Actions pointing anywhere
else are never touched. Settings: ICONIK_TOKEN, ICONIK_ID and, optionally,
ICONIK_URL, from the environment or a .env file.
"""

from __future__ import annotations

import sys

from b2iconik.custom_actions import delete

def build_parser():
    return delete.build_parser("delete_custom_actions.py")


def main(argv: list[str] | None = None) -> int:
    return delete.main(argv, prog="delete_custom_actions.py")


if __name__ == "__main__":
    sys.exit(main())
