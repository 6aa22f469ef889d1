"""The demo: Add to LucidLink and Remove from LucidLink, end to end, on one machine.

Runs the iconik emulator (with its storage gateway), seeds a B2 storage with
small generated media files in nested collections, starts the plugin under
real gunicorn, creates the custom actions with create_custom_actions.py, then
clicks Add and Remove the way iconik does. One asset's B2 copy is corrupt, so
Remove must keep that asset on LucidLink. Before and after Remove it runs
`python -m b2iconik report` (writing its HTML page; with `--keep`, also a
screenshot of it, report.png, where Chromium is installed), and before Remove a
cleanup dry run; at the end it reads the plugin's metrics. Every server it starts
takes a free port. Prints what is where after each step and what the jobs and
tools reported; exits 1 if anything is not as it must be.

    python -m b2iconik demo [--keep DIR]
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from b2iconik import cli
from b2iconik.emulator import Emulator
from b2iconik.progress_bar import Waiting
from b2iconik.jobs.model import FINAL, JobStatus
from b2iconik.server.launcher import LaunchFailed, PluginServer, free_port

ROOT = Path(__file__).resolve().parent.parent
FORMATS = ("ORIGINAL", "PPRO_PROXY")

ASSETS = [
    # (title, collection, has a proxy, B2 copy is corrupt)
    ("A001_C003_opening_wide.mov", "Day 1", True, False),
    ("A001_C007_interview.mov", "Day 1", True, False),
    ("A002_C001_b-roll_street.mov", "Day 2", False, False),
    ("A002_C004_b-roll_market.mov", "Day 2", True, True),
    ("title_card.png", "Spring campaign", False, False),
]


class DemoFailed(Exception):
    pass


def _media(title: str, size: int) -> bytes:
    return random.Random(title).randbytes(size)


def seed(emu: Emulator) -> dict:
    """Storages, nested collections and assets whose masters are on B2."""
    b2 = emu.add_storage("Backblaze B2 archive", method="B2")
    ll = emu.add_storage("LucidLink Filespace", method="FILE")
    top = emu.add_collection("Projects")
    campaign = emu.add_collection("Spring campaign", parent_id=top)
    days = {"Spring campaign": campaign,
            "Day 1": emu.add_collection("Day 1", parent_id=campaign),
            "Day 2": emu.add_collection("Day 2", parent_id=campaign)}
    assets = {}
    for title, collection, proxy, corrupt in ASSETS:
        asset_id = emu.add_asset(title)
        data = _media(title, 48_000 + len(title) * 1000)
        checksum = hashlib.md5(b"bit rot " + data).hexdigest() if corrupt else "auto"
        emu.add_file(asset_id, "ORIGINAL", b2, title, data, checksum=checksum)
        if proxy:
            emu.add_file(asset_id, "PPRO_PROXY", b2, title.rsplit(".", 1)[0] + "_proxy.mp4", data[:8000])
        emu.add_to_collection(days[collection], asset_id)
        assets[asset_id] = {"title": title, "proxy": proxy, "corrupt": corrupt}
    return {"b2": b2, "ll": ll, "top": top, "assets": assets}


def start_plugin(env: dict, state_dir: Path) -> PluginServer:
    plugin = PluginServer({**env, "PLUGIN_STATE_DIR": str(state_dir), "PLUGIN_POLL_INTERVAL": "0.2",
                           "PLUGIN_MAX_POLL_INTERVAL": "1", "LOG_FORMAT": "text", "LOG_LEVEL": "WARNING"},
                          stop_timeout=40)
    try:
        return plugin.start()
    except LaunchFailed as failed:
        raise DemoFailed(f"the plugin did not start under gunicorn: {failed}") from None


def create_actions(env: dict, endpoint: str, world: dict) -> None:
    result = subprocess.run([sys.executable, "create_custom_actions.py", endpoint, world["b2"], world["ll"]],
                            cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True)
    print(result.stdout.rstrip())
    if result.returncode != 0:
        raise DemoFailed(f"create_custom_actions.py failed: {result.stderr.strip()}")


def click(emu: Emulator, title: str, context: str, **selection) -> requests.Response:
    """Run the custom action called `title` the way iconik does: its URL, its headers."""
    action = next((a for a in emu.custom_actions if a["title"] == title and a["context"] == context), None)
    if action is None:
        raise DemoFailed(f"no custom action {title!r} for {context} in iconik")
    print(f"\n>>> {title} ({context}) ...")
    return emu.post_custom_action(action["url"], headers=action["headers"], context=context, **selection)


def follow(url: str, secret: str, answer: requests.Response, timeout: float = 120) -> dict:
    if answer.status_code != 202:
        raise DemoFailed(f"the plugin answered {answer.status_code}: {answer.text}")
    status_url = url + answer.json()["status_url"]
    deadline = time.monotonic() + timeout
    with Waiting("waiting for the job", timeout) as wait:
        while time.monotonic() < deadline:
            view = requests.get(status_url, headers={"x-bz-secret": secret}, timeout=5).json()
            if view["status"] in FINAL:
                return view
            wait.note(f"{view['status']}, phase {view['phase']}")
            time.sleep(0.2)
    raise DemoFailed(f"job did not finish within {timeout} s")


def table(headers: list[str], rows: list[list]) -> str:
    widths = [max(len(str(x)) for x in [h, *[r[i] for r in rows]]) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()
    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def where(emu: Emulator, world: dict) -> dict:
    """(asset, format) -> {"B2": bytes or None, "LucidLink": bytes or None} from the ground truth."""
    found = {}
    for asset_id in world["assets"]:
        for fmt in FORMATS:
            for role in ("b2", "ll"):
                copies = emu.copies(asset_id, fmt, world[role])
                data = b"".join(f["bytes"] for c in copies for f in c["files"]) if copies else None
                found.setdefault((asset_id, fmt), {})[role] = data
    return found


def show_storages(emu: Emulator, world: dict, heading: str) -> dict:
    state = where(emu, world)
    rows = []
    for (asset_id, fmt), roles in state.items():
        if roles["b2"] is None and roles["ll"] is None:
            continue
        rows.append([world["assets"][asset_id]["title"], fmt,
                     f"{len(roles['b2'])} B" if roles["b2"] is not None else "-",
                     f"{len(roles['ll'])} B" if roles["ll"] is not None else "-"])
    print(f"\n{heading}\n" + table(["asset", "format", "on B2", "on LucidLink"], rows))
    return state


def show_job(view: dict, world: dict) -> None:
    rows = [[world["assets"].get(o["asset_id"], {}).get("title", o["asset_id"]), o["format"], o["result"],
             o["reason"]] for o in view["outcomes"]]
    print(f"\njob {view['job_id']}: {view['status']}\n" + table(["asset", "format", "result", "reason"], rows))
    print(f"message: {view['message']}")


def run_tool(env: dict, *argv: str) -> subprocess.CompletedProcess:
    """`python -m b2iconik <argv>` as an operator runs it; prints what it printed."""
    print(f"\n$ python -m b2iconik {' '.join(argv)}")
    done = subprocess.run([sys.executable, "-m", "b2iconik", *argv], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120)
    print(done.stdout.rstrip())
    if done.stderr.strip():
        print(done.stderr.rstrip())
    return done


def lucidlink_truth(emu: Emulator, world: dict) -> dict:
    """Bytes on LucidLink from the ground truth: in all, of copies whose B2 copy is sound, and of the others
    (the seeded corrupt B2 copies: the same bytes under a checksum that does not match them)."""
    on_ll = {key: roles for key, roles in where(emu, world).items() if roles["ll"] is not None}
    sound = sum(len(roles["ll"]) for (asset_id, fmt), roles in on_ll.items()
                if roles["b2"] == roles["ll"] and not (world["assets"][asset_id]["corrupt"] and fmt == "ORIGINAL"))
    total = sum(len(roles["ll"]) for roles in on_ll.values())
    return {"bytes": total, "same_on_b2": sound, "other": total - sound}


def run_report(env: dict, world: dict, workdir: Path, label: str, problems: list, emu: Emulator) -> None:
    """The report, its HTML page, and checks of its figures against the ground truth."""
    page, data = workdir / f"report-{label}.html", workdir / f"report-{label}.json"
    done = run_tool(env, "report", "--b2-storage", world["b2"], "--ll-storage", world["ll"], "--no-progress",
                    "--html", str(page), "--json", str(data))
    truth = lucidlink_truth(emu, world)
    print(f"\nchecks of the report {label}:")
    check(done.returncode == 0, "the report ran", problems)
    if done.returncode != 0:
        return
    totals = json.loads(data.read_text())
    categories = {name: figures["bytes"] for name, figures in totals["categories"].items()}
    check(totals["totals"]["bytes"] == truth["bytes"],
          f"it counts the {truth['bytes']} bytes on LucidLink", problems)
    check(categories["safe"] == truth["same_on_b2"],
          f"safe to remove now: the {truth['same_on_b2']} bytes whose B2 copy is sound", problems)
    check(categories["unverified"] == truth["other"],
          f"B2 copy does not verify: the {truth['other']} bytes of the corrupt copy", problems)
    html = page.read_text() if page.exists() else ""
    check("<svg" in html and "<script" not in html.lower(),
          f"the HTML page {page.name} is self-contained, with its charts", problems)


def run_cleanup_dry_run(env: dict, world: dict, problems: list, emu: Emulator) -> None:
    """A cleanup plan down to half of what LucidLink holds: printed, and nothing changed."""
    before = emu.storage_files(world["ll"])
    target = lucidlink_truth(emu, world)["bytes"] // 2
    done = run_tool(env, "cleanup", "--until-below", f"{target}B", "--b2-storage", world["b2"],
                    "--ll-storage", world["ll"], "--no-progress")
    print("\nchecks of the cleanup dry run:")
    check(done.returncode == 0 and "Would go:" in done.stdout, "the cleanup printed its plan", problems)
    check(emu.storage_files(world["ll"]) == before, "the dry run changed nothing on LucidLink", problems)
    corrupt = [info["title"] for info in world["assets"].values() if info["corrupt"]]
    plan = done.stdout.split("Kept:")[0]
    check(all(f"{title}" not in plan or "stays: ORIGINAL: B2 copy checksum" in plan for title in corrupt),
          "the plan never takes the ORIGINAL whose B2 copy is corrupt", problems)


def check_metrics(port: int, problems: list, jobs: int) -> None:
    """The plugin's metrics, on the demo's own port: its version, and every job's end and duration."""
    from prometheus_client.parser import text_string_to_metric_families

    from b2iconik.version import version

    deadline = time.monotonic() + 10  # a job's end is counted right after it is recorded
    while True:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
        total = lambda name: sum(s.value for s in samples if s.name == name)
        if total("b2iconik_job_duration_seconds_count") >= jobs or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    print(f"\nchecks of the plugin's metrics (http://127.0.0.1:{port}/metrics):")
    check(any(s.name == "b2iconik_build_info" and s.labels["version"] == version() for s in samples),
          f"b2iconik_build_info names version {version()}", problems)
    check(total("b2iconik_jobs_finished_total") == total("b2iconik_job_duration_seconds_count") == jobs,
          f"the {jobs} jobs' ends and durations are counted", problems)


def keep_screenshot(page: Path, png: Path) -> None:
    """A picture of the report page, by headless Chromium; said and skipped where it cannot be taken."""
    from b2iconik.report import browser

    try:
        browser.screenshot(page, png)
    except (browser.BrowserMissing, RuntimeError, OSError, subprocess.TimeoutExpired) as error:
        print(f"\nno screenshot of the report page: {error}")
        return
    print(f"\nscreenshot of the report page: {png}")


def check(condition: bool, what: str, problems: list) -> None:
    print(f"  [{'ok' if condition else 'WRONG'}] {what}")
    if not condition:
        problems.append(what)


def run(workdir: Path, screenshot: bool = False) -> int:
    problems: list[str] = []
    with Emulator(workdir / "iconik") as emu:
        world = seed(emu)
        secret = secrets.token_hex(32)
        # The commands share the plugin's state directory, so they take the same iconik budget.
        env = {"ICONIK_ID": emu.app_id, "ICONIK_URL": emu.url, "BZ_SHARED_SECRET": secret,
               "ICONIK_TOKEN": emu.new_token(), "PLUGIN_STATE_DIR": str(workdir / "state")}
        # Free ports for all it starts, so that it runs beside a plugin on this host (its metrics on 9464).
        metrics_port = free_port()
        plugin_env = {**{k: v for k, v in env.items() if k != "ICONIK_TOKEN"},
                      "PLUGIN_METRICS_PORT": str(metrics_port)}
        plugin = start_plugin(plugin_env, workdir / "state")
        url = plugin.url
        try:
            print(f"iconik emulator at {emu.url}; plugin under gunicorn at {url}, "
                  f"its metrics at http://127.0.0.1:{metrics_port}/metrics\n")
            create_actions(env, url, world)
            before = show_storages(emu, world, "Before: masters on B2 only")

            add = follow(url, secret, click(emu, "Add to LucidLink", "COLLECTION", collection_ids=[world["top"]]))
            show_job(add, world)
            after_add = show_storages(emu, world, "After Add to LucidLink")
            print("\nchecks after Add:")
            check(add["status"] == JobStatus.SUCCEEDED, "the add job succeeded", problems)
            check(all(roles["ll"] == roles["b2"] for roles in after_add.values() if roles["b2"] is not None),
                  "every format on B2 is now on LucidLink, byte for byte", problems)

            run_report(env, world, workdir, "before-remove", problems, emu)
            if screenshot:
                keep_screenshot(workdir / "report-before-remove.html", workdir / "report.png")
            run_cleanup_dry_run(env, world, problems, emu)

            remove = follow(url, secret, click(emu, "Remove from LucidLink", "BULK",
                                               asset_ids=list(world["assets"])))
            show_job(remove, world)
            after_remove = show_storages(emu, world, "After Remove from LucidLink")
            print("\nchecks after Remove:")
            corrupt = {a for a, info in world["assets"].items() if info["corrupt"]}
            check(all(after_remove[(a, "ORIGINAL")]["ll"] is not None for a in corrupt),
                  "the asset whose B2 copy is corrupt is kept on LucidLink", problems)
            check(all(roles["ll"] is None for (a, _), roles in after_remove.items() if a not in corrupt),
                  "every other asset is gone from LucidLink", problems)
            check(all(after_remove[k]["b2"] == before[k]["b2"] for k in before),
                  "B2 is exactly as before (nothing deleted or changed there)", problems)
            kept = [o for o in remove["outcomes"] if o["result"] == "kept"]
            check(remove["status"] == JobStatus.SUCCEEDED_WITH_WARNINGS and len(kept) == 1
                  and "checksum" in kept[0]["reason"] and "B2 copy differs (1)" in remove["message"],
                  "the remove job ends with a warning, and reports the kept asset and why", problems)
            run_report(env, world, workdir, "after-remove", problems, emu)
            panel = {job["title"]: job["status"] for job in emu.jobs.values() if job.get("type") == "CUSTOM"}
            print(f"\niconik Jobs panel: {panel}")
            check(any(t.startswith("Add") and s == "FINISHED" for t, s in panel.items())
                  and any(t.startswith("Remove") and s == "FINISHED_WITH_WARNING" for t, s in panel.items()),
                  "iconik's Jobs panel shows the add FINISHED and the remove FINISHED_WITH_WARNING (one asset "
                  "kept)", problems)
            check_metrics(metrics_port, problems, jobs=2)
        finally:
            plugin.stop()
    print("\nDEMO " + ("PASSED" if not problems else f"FAILED: {'; '.join(problems)}"))
    return 0 if not problems else 1


def main(argv=None) -> int:
    return cli.run_guarded(lambda: _main(argv))


def _main(argv) -> int:
    parser = cli.ArgumentParser(prog="python -m b2iconik demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", metavar="DIR", help="keep the emulator's files, the job store, the reports "
                        "and a screenshot of the report page (report.png) in DIR")
    args = parser.parse_args(argv)
    if not (ROOT / "gunicorn.conf.py").is_file():
        raise cli.UsageError("the demo serves the plugin from a checkout of b2-iconik-plugin: in the checkout, run "
                             "python -m b2iconik demo (or scripts/demo)")
    try:
        if args.keep:
            Path(args.keep).mkdir(parents=True, exist_ok=True)
            return run(Path(args.keep), screenshot=True)
        with tempfile.TemporaryDirectory(prefix="b2iconik-demo-") as workdir:
            return run(Path(workdir))
    except DemoFailed as error:
        print(f"\nDEMO FAILED: {error}", file=sys.stderr)
        return 1
