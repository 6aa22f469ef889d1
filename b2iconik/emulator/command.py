"""Run the emulator standalone until Ctrl-C or SIGTERM.

    python -m b2iconik emulator --data DIR --port N [--seed world.json] [--app-id X --token Y --user-id Z]
                                [--mode parent_copy_jobs --mode empty_lists_404 ...]

Prints the URL and the credentials it accepts as ICONIK_* lines (ICONIK_USER_ID: whose the token is).
"""

from __future__ import annotations

import argparse
import json
import signal
import threading


from .emulator import Emulator
from .faults import MODES


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m b2iconik emulator", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="directory holding the storages' bytes")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any free one)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--seed", help="JSON file describing storages, assets and collections")
    parser.add_argument("--app-id", help="App-ID to accept (default: a random one)")
    parser.add_argument("--token", help="Auth-Token to accept (default: a random one)")
    parser.add_argument("--user-id", help="id of the user the token belongs to (default: a random one)")
    parser.add_argument("--per-page-cap", type=int, default=100)
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    parser.add_argument("--mode", action="append", choices=MODES, default=[],
                        help="switch on one of real iconik's behaviours (repeatable)")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    emu = Emulator(args.data, per_page_cap=args.per_page_cap, app_id=args.app_id)
    seeded = emu.seed_file(args.seed) if args.seed else {}
    user_id = emu.user_id
    if args.user_id:
        user_id = emu.add_user("editor@example.com", "Eddie", "Editor", user_id=args.user_id)
    token = emu.new_token(args.token, user_id=user_id)
    for mode in args.mode:
        setattr(emu.faults, mode, True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    emu.start(host=args.host, port=args.port, quiet=args.quiet)
    print(f"iconik emulator serving {emu.url} (storages under {args.data})")
    print(f"ICONIK_URL={emu.url}")
    print(f"ICONIK_APP_ID={emu.app_id}")
    print(f"ICONIK_TOKEN={token}")
    print(f"ICONIK_USER_ID={user_id}")
    if seeded:
        print(f"SEEDED={json.dumps(seeded)}")
    print("Ctrl-C to stop", flush=True)
    while not stop.wait(0.5):
        pass
    emu.stop()
    print("stopped", flush=True)
