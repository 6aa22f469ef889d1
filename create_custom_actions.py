#!/usr/bin/env python3
"""Create (or update) the plugin's custom actions in iconik: Add to LucidLink, Remove from
LucidLink and Check LucidLink copies (the preview of a Remove), in the ASSET, COLLECTION and
BULK contexts.

    create_custom_actions.py <endpoint> <b2_storage_id> <ll_storage_id> [formats] [--dry-run]
    create_custom_actions.py --endpoint E --b2_storage_id B --ll_storage_id L [--formats F]
    create_custom_actions.py <endpoint> [formats]      (with PLUGIN_B2_STORAGE_ID and PLUGIN_LL_STORAGE_ID set)
    create_custom_actions.py --list [endpoint]

Settings come from the environment or a .env file: ICONIK_TOKEN, ICONIK_ID,
BZ_SHARED_SECRET (at least 32 characters, as the plugin's) and, optionally, ICONIK_URL
(default https://app.iconik.io). PLUGIN_B2_STORAGE_ID and PLUGIN_LL_STORAGE_ID, when
set, are the storages the plugin is pinned to: a storage left out takes its pin, and a
storage given that is not the pinned one is refused (exit 2), since the plugin would
refuse it too. Running it again is safe: existing actions are left alone or updated,
never duplicated.
"""

from __future__ import annotations

import sys

from b2iconik.custom_actions import create

def build_parser():
    return create.build_parser("create_custom_actions.py")


def main(argv: list[str] | None = None) -> int:
    return create.main(argv, prog="create_custom_actions.py")


if __name__ == "__main__":
    sys.exit(main())
