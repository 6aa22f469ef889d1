"""`python -m b2iconik <command> [arguments]`, or `b2iconik <command>` once installed: every command in one place.

Each command is a line of COMMANDS: its module, imported only when it runs, and
that module's `main(argv) -> int`. `python -m b2iconik <command> --help` shows
a command's own options; `python -m b2iconik --version` prints the version.
Exit 2 for an unknown command; the commands' exit codes (0 ok, 1 a problem found,
2 bad arguments or settings, 130 interrupted) are b2iconik/cli.py's.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "selftest": ("b2iconik.selftest.command", "prove a real deployment end to end with one test asset"),
    "create-actions": ("b2iconik.custom_actions.create", "create or update the plugin's custom actions in iconik"),
    "delete-actions": ("b2iconik.custom_actions.delete", "delete the plugin's custom actions for one endpoint"),
    "report": ("b2iconik.report.command", "what is on LucidLink: totals, reasons, age; --csv, --json, --html"),
    "cleanup": ("b2iconik.cleanup.command", "plan (or --apply: queue) a Remove of old assets, or down to a size"),
    "jobs": ("b2iconik.jobs.command", "the plugin's jobs in its job store"),
    "demo": ("b2iconik.demo", "the whole flow end to end on a local iconik emulator"),
    "emulator": ("b2iconik.emulator.command", "run the local iconik emulator"),
    "bench": ("b2iconik.bench", "the benchmark under real gunicorn (from a checkout of the repository)"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: python -m b2iconik <command> [arguments]", "       b2iconik <command> [arguments]   (installed)",
             "", "commands:"]
    lines += [f"  {name:<{width}}  {about}" for name, (_, about) in COMMANDS.items()]
    lines += ["", "python -m b2iconik <command> --help shows a command's options; python -m b2iconik --version, "
              "the version."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if argv and argv[0] == "--version":
        from b2iconik.version import DISTRIBUTION, version

        print(f"{DISTRIBUTION} {version()}")
        return 0
    if not argv or argv[0] not in COMMANDS:
        problem = "no command given" if not argv else f"unknown command {argv[0][:40]!r}"
        print(f"error: {problem}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    try:
        code = module.main(argv[1:])
    except SystemExit as exit_:  # argparse's --help (0) or its refusal (2)
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 2)
    return 0 if code is None else code


if __name__ == "__main__":
    sys.exit(main())
