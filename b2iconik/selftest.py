"""Prove a deployment end to end, with one test asset.

    python -m b2iconik.selftest --endpoint URL --b2-storage ID --ll-storage ID --asset ID
                                [--formats ORIGINAL] [--keep] [--env-file PATH]

Settings: ICONIK_ID, ICONIK_TOKEN, BZ_SHARED_SECRET and ICONIK_URL, from the
environment or a .env file (the environment wins; values in a file named with
--env-file win over the environment); --iconik-url and --iconik-id override both.
PLUGIN_B2_STORAGE_ID and PLUGIN_LL_STORAGE_ID, when set (as for the plugin), stand in
for --b2-storage and --ll-storage; a storage given that is not the pinned one is
refused (exit 2), since the plugin would refuse it too.

1. Checks the configuration: both storages exist and are different Files
   storages, the plugin answers (GET /, /healthz) and accepts the shared secret,
   the custom actions exist and point at this endpoint with this secret, and the
   asset's formats are intact on B2 (otherwise it refuses to start).
2. Posts "Add to LucidLink" for the asset to the plugin as iconik does, follows
   the job to its end, and checks through iconik that the LucidLink copy is
   complete: CLOSED, same sizes and checksums as the B2 copy.
3. Unless --keep: checks the B2 copy is still intact (refusing otherwise), posts
   "Remove from LucidLink", follows the job, and checks that the LucidLink copy
   is gone and the B2 copy is intact and unchanged.
4. Prints each check with PASS/FAIL and its time; exits 0 when all passed,
   1 when a check failed, 2 for bad arguments or settings.

It never names any asset but the one given; the secret and the token are never printed.
"""

from __future__ import annotations

import argparse
import hmac
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Mapping, TextIO

import requests
from dotenv import dotenv_values, find_dotenv

import iconik
from b2iconik import custom_actions as ca
from b2iconik.verify import Copy, check_b2_copy, copies_of

SECRET_HEADER = ca.SECRET_HEADER
DEFAULT_FORMATS = ("ORIGINAL",)
JOB_FINAL = ("succeeded", "failed")
EXPECTED_RESULT = {"add": "copied", "remove": "removed"}
VERB_TITLE = {"add": "Add to LucidLink", "remove": "Remove from LucidLink"}
HTTP_TIMEOUT = (5.0, 30.0)


# -- results -------------------------------------------------------------------


@dataclass
class Result:
    """The outcome of one check: `detail` says what was found, or exactly what is wrong."""

    name: str
    ok: bool
    detail: str
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    skipped: bool = False

    @property
    def label(self) -> str:
        return "SKIP" if self.skipped else ("PASS" if self.ok else "FAIL")


def passed(detail: str, notes: list[str] | None = None) -> Result:
    return Result("", True, detail, list(notes or []))


def failed(detail: str, notes: list[str] | None = None) -> Result:
    return Result("", False, detail, list(notes or []))


@dataclass
class Step:
    title: str
    results: list[Result] = field(default_factory=list)

    @property
    def failures(self) -> list[Result]:
        return [r for r in self.results if not r.ok and not r.skipped]

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.results)


class Report:
    """Prints each check as it finishes, and a summary at the end."""

    def __init__(self, out: TextIO):
        self.out = out
        self.steps: list[Step] = []
        self.started = time.monotonic()

    def line(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def step(self, title: str) -> Step:
        step = Step(title)
        self.steps.append(step)
        self.line()
        self.line(f"Step {len(self.steps)}: {title}")
        return step

    def progress(self, text: str) -> None:
        self.line(f"        ... {text}")

    def run(self, name: str, check: Callable[[], Result]) -> Result:
        """Run one check, timing it; a failure to reach iconik or the plugin is its result."""
        started = time.monotonic()
        try:
            result = check()
        except iconik.IconikError as error:
            result = failed(ca.describe_error(error))
        except requests.RequestException as error:
            result = failed(f"could not reach the plugin: {describe_request_error(error)}")
        except ca.CustomActionError as error:
            result = failed(str(error))
        except Exception as error:  # a surprise answer must still end in a readable report
            result = failed(f"unexpected error: {type(error).__name__}: {str(error)[:300]}")
        result.name = name
        result.seconds = time.monotonic() - started
        self._record(result)
        return result

    def skip(self, name: str, why: str, *, counts_as_failure: bool = False) -> Result:
        result = Result(name, not counts_as_failure, why, skipped=True)
        self._record(result)
        return result

    def _record(self, result: Result) -> None:
        self.steps[-1].results.append(result)
        timing = "" if result.skipped else f"{result.seconds:6.1f} s"
        self.line(f"  {result.label}  {result.name:<22} {timing:>8}  {result.detail}")
        for note in result.notes:
            self.line(f"        note: {note}")

    @property
    def failures(self) -> list[Result]:
        return [r for step in self.steps for r in step.failures]

    @property
    def not_run(self) -> list[Result]:
        return [r for step in self.steps for r in step.results if r.skipped and not r.ok]

    @property
    def ok(self) -> bool:
        return not self.failures and not self.not_run

    def summary(self, closing: str) -> None:
        self.line()
        self.line("Summary")
        for number, step in enumerate(self.steps, 1):
            ran = [r for r in step.results if not r.skipped]
            if step.failures:
                verdict = f"FAIL  ({len(step.failures)} of {len(ran)} check(s) failed)"
            elif not ran:
                verdict = "SKIP"
            elif any(r.skipped and not r.ok for r in step.results):
                verdict = "FAIL  (not finished)"
            else:
                verdict = f"PASS  ({len(ran)} check(s))"
            self.line(f"  step {number}  {step.title:<28} {verdict:<36} {step.seconds:6.1f} s")
        total = time.monotonic() - self.started
        self.line()
        if self.ok:
            self.line(f"PASSED in {total:.1f} s: {closing}")
        else:
            names = ", ".join(dict.fromkeys(r.name for r in self.failures)) or "none"
            self.line(f"FAILED in {total:.1f} s: {len(self.failures)} check(s) failed ({names}). {closing}")


def describe_request_error(error: requests.RequestException) -> str:
    if isinstance(error, requests.ConnectTimeout):
        return "the connection timed out (is the endpoint reachable from here?)"
    if isinstance(error, requests.ConnectionError):
        return "could not connect (is it running, and is --endpoint right?)"
    if isinstance(error, requests.Timeout):
        return f"no answer within {HTTP_TIMEOUT[1]:.0f} s"
    return type(error).__name__


# -- the run's context ---------------------------------------------------------------


@dataclass
class Options:
    endpoint: str
    b2_storage_id: str
    ll_storage_id: str
    asset_id: str
    formats: tuple[str, ...] = DEFAULT_FORMATS
    keep: bool = False
    timeout: float = 1800.0
    poll: float = 2.0
    checksum_wait: float = 60.0


@dataclass
class Snapshot:
    """One copy (file set) on B2 as found before the test, to compare with later."""

    file_set_id: str
    version_id: str | None
    files: dict[str, tuple]
    """name -> (size, checksum)"""

    @classmethod
    def of(cls, copy: Copy) -> "Snapshot":
        return cls(copy.id, copy.file_set.get("version_id"),
                   {_name(f): (f.get("size"), f.get("checksum")) for f in copy.files})

    @property
    def size(self) -> int:
        return sum(size for size, _ in self.files.values() if isinstance(size, int))


@dataclass
class Context:
    options: Options
    settings: ca.Settings
    client: iconik.IconikClient
    http: requests.Session
    report_progress: Callable[[str], None] = lambda text: None
    asset_title: str | None = None
    b2_before: dict[str, Snapshot] = field(default_factory=dict)
    actions: dict[tuple[str, str], ca.PluginAction] = field(default_factory=dict)
    job_ids: dict[str, str] = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        return self.options.endpoint


def _name(record: dict) -> str:
    return record.get("name") or record.get("original_name") or ""


# -- reading the asset through iconik ----------------------------------------------


@dataclass
class Records:
    formats: dict[str, str]
    file_sets: list[dict]
    files: list[dict]

    def copies(self, format_name: str, storage_id: str, *, active_only: bool) -> list[Copy]:
        format_id = self.formats.get(format_name)
        if format_id is None:
            return []
        return copies_of(self.file_sets, self.files, format_id, storage_id, active_only=active_only)


def read_records(ctx: Context) -> Records:
    asset_id = ctx.options.asset_id
    formats = {f.get("name"): f.get("id") for f in ctx.client.iter_formats(asset_id)}
    file_sets = list(ctx.client.iter_file_sets(asset_id))
    files = list(ctx.client.iter_files(asset_id)) if file_sets else []
    return Records(formats, file_sets, files)


def b2_copy_problem(copy: Copy) -> str | None:
    """Why a B2 copy is not intact on its own (ACTIVE, files all CLOSED, sizes known), or None."""
    if not copy.files:
        return "B2 copy has no files"
    verdict = check_b2_copy(copy, copy)
    return None if verdict.safe else verdict.reason


def snapshot_problem(copy: Copy | None, snapshot: Snapshot) -> str | None:
    """Why `copy` is not the intact B2 copy recorded in `snapshot`, or None."""
    if copy is None:
        return f"the B2 file set {snapshot.file_set_id} is gone or DELETED"
    problem = b2_copy_problem(copy)
    if problem:
        return problem
    now = Snapshot.of(copy)
    if now.version_id != snapshot.version_id:
        return "the B2 copy is now of another version of the asset"
    if set(now.files) != set(snapshot.files):
        return (f"the B2 copy's files changed: were {sorted(snapshot.files)}, are {sorted(now.files)}")
    for name, (size, checksum) in snapshot.files.items():
        size_now, checksum_now = now.files[name]
        if size_now != size:
            return f"the B2 copy of {name!r} was {size} bytes, is now {size_now}"
        if checksum and checksum_now != checksum:
            return f"the B2 copy's checksum of {name!r} changed"
    return None


def _storage_label(ctx: Context, role: str) -> str:
    storage_id = ctx.options.b2_storage_id if role == "B2" else ctx.options.ll_storage_id
    return f"{role} storage {storage_id}"


def _files_text(snapshot: Snapshot) -> str:
    count = len(snapshot.files)
    return f"{count} file{'s' if count != 1 else ''}, {snapshot.size} bytes"


# -- step 1: the configuration --------------------------------------------------------


def check_storages(ctx: Context) -> Result:
    """Both storages exist, are Files storages, and are different (checked before)."""
    warnings = ca.check_storages(ctx.client, ctx.options.b2_storage_id, ctx.options.ll_storage_id)
    b2 = ctx.client.get_storage(ctx.options.b2_storage_id) or {}
    ll = ctx.client.get_storage(ctx.options.ll_storage_id) or {}
    return passed(f"B2 storage {b2.get('name')!r} ({b2.get('method')}) and LucidLink storage "
                  f"{ll.get('name')!r} ({ll.get('method')}) are Files storages", warnings)


def check_plugin(ctx: Context) -> Result:
    """The plugin answers GET / as b2-iconik-plugin, and GET /healthz with 200."""
    response = ctx.http.get(f"{ctx.endpoint}/", timeout=HTTP_TIMEOUT)
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200 or not isinstance(body, dict) or body.get("service") != "b2-iconik-plugin":
        what = f"HTTP {response.status_code}" + ("" if isinstance(body, dict) else ", not JSON")
        return failed(f"GET {ctx.endpoint}/ answered {what}, not b2-iconik-plugin's ready answer: "
                      "is --endpoint the plugin's base URL, and is the plugin running there?")
    notes = []
    jobs = str(body.get("jobs") or "")
    if jobs.startswith("not"):
        notes.append(f"the process that answered says jobs are {jobs}; they run only where "
                     "PLUGIN_RUN_JOBS is on (the default)")
    health = ctx.http.get(f"{ctx.endpoint}/healthz", timeout=HTTP_TIMEOUT)
    if health.status_code != 200:
        return failed(f"the plugin answers, but GET /healthz answered HTTP {health.status_code} "
                      f"({_error_of(health)}): its job store (PLUGIN_STATE_DIR) cannot record jobs; "
                      "see the plugin's log", notes)
    return passed(f"{ctx.endpoint} answers as b2-iconik-plugin ({body.get('status')}); /healthz ok", notes)


def check_secret(ctx: Context) -> Result:
    """The plugin accepts BZ_SHARED_SECRET: asking for a job that cannot exist gives 404, not 401."""
    probe = str(uuid.uuid4())
    response = ctx.http.get(f"{ctx.endpoint}/jobs/{probe}", headers={SECRET_HEADER: ctx.settings.secret},
                            timeout=HTTP_TIMEOUT)
    if response.status_code == 404:
        return passed("the plugin accepts BZ_SHARED_SECRET")
    if response.status_code == 401:
        return failed(f"the plugin rejected BZ_SHARED_SECRET ({_error_of(response)}): the plugin runs with "
                      "another BZ_SHARED_SECRET than the one given here; give both the same secret "
                      "(and re-run create_custom_actions.py so that iconik sends it)")
    return failed(f"GET {ctx.endpoint}/jobs/<id> answered HTTP {response.status_code} "
                  f"({_error_of(response)}), not 404 or 401")


def _secret_sent(action: ca.PluginAction) -> str | None:
    headers = action.raw.get("headers")
    if not isinstance(headers, dict):
        return None
    return next((str(v) for k, v in headers.items() if str(k).lower() == SECRET_HEADER), None)


def _same_secret(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8"))


def _action_label(context: str, verb: str) -> str:
    return f"{context} {VERB_TITLE[verb]!r}"


def check_custom_actions(ctx: Context) -> Result:
    """Each of the six actions (3 contexts x add/remove) exists at this endpoint, for these
    storages, enabled, and sends this secret."""
    opts = ctx.options
    wanted_endpoint = ca.endpoint_key(ctx.endpoint)
    mine = [a for a in ca.list_plugin_actions(ctx.client)
            if a.b2_storage_id == opts.b2_storage_id and a.ll_storage_id == opts.ll_storage_id]
    here = [a for a in mine if ca.endpoint_key(a.endpoint) == wanted_endpoint]
    missing, disabled, no_header, wrong_secret = [], [], [], []
    for context in ca.CONTEXTS:
        for verb in ca.VERBS:
            candidates = [a for a in here if a.context == context and a.verb == verb]
            good = [a for a in candidates if not a.disabled and _same_secret(_secret_sent(a), ctx.settings.secret)]
            label = _action_label(context, verb)
            if good:
                ctx.actions[(context, verb)] = good[0]
            elif not candidates:
                missing.append(label)
            elif all(a.disabled for a in candidates):
                disabled.append(label)
            elif all(_secret_sent(a) is None for a in candidates if not a.disabled):
                no_header.append(label)
            else:
                wrong_secret.append(label)
    problems = []
    if missing:
        problems.append(f"missing: {', '.join(missing)}")
        elsewhere = sorted({a.endpoint for a in mine} - {a.endpoint for a in here})
        if elsewhere:
            problems.append(f"actions for these storages point at {', '.join(elsewhere)}, not at {ctx.endpoint}")
    if wrong_secret:
        problems.append(f"send an {SECRET_HEADER} header that is not BZ_SHARED_SECRET: {', '.join(wrong_secret)}")
    if no_header:
        problems.append(f"send no {SECRET_HEADER} header: {', '.join(no_header)}")
    if disabled:
        problems.append(f"disabled in iconik: {', '.join(disabled)}")
    if problems:
        fix = (f"to fix, run: python create_custom_actions.py {ctx.endpoint} {opts.b2_storage_id} "
               f"{opts.ll_storage_id} (with the same BZ_SHARED_SECRET as the plugin)")
        return failed("custom actions for this endpoint and these storages: " + "; ".join(problems), [fix])
    notes = []
    carried = sorted({",".join(a.formats) or "the plugin's FORMAT_NAMES" for a in ctx.actions.values()})
    if carried != [",".join(opts.formats)]:
        notes.append(f"the actions copy {' / '.join(carried)}; this test copies {','.join(opts.formats)}")
    return passed(f"all {len(ctx.actions)} custom actions ({', '.join(ca.CONTEXTS)} x add, remove) point at "
                  f"{ctx.endpoint} with these storages and this secret", notes)


def check_asset(ctx: Context) -> Result:
    """The asset exists and each format to test has an intact copy on B2 (else: refuse to start)."""
    opts = ctx.options
    try:
        asset = ctx.client.get_asset(opts.asset_id) or {}
    except iconik.NotFound:
        return failed(f"asset {opts.asset_id} does not exist in iconik (or this token may not see it)")
    ctx.asset_title = asset.get("title")
    records = read_records(ctx)
    problems, described, notes = [], [], []
    for fmt in opts.formats:
        if fmt not in records.formats:
            problems.append(f"the asset has no {fmt} format")
            continue
        b2_copies = records.copies(fmt, opts.b2_storage_id, active_only=True)
        if not b2_copies:
            problems.append(f"its {fmt} is not on {_storage_label(ctx, 'B2')}")
            continue
        reasons = {copy.id: b2_copy_problem(copy) for copy in b2_copies}
        intact = next((copy for copy in b2_copies if reasons[copy.id] is None), None)
        if intact is None:
            problems.append(f"its {fmt} on B2 is not intact: " + "; ".join(dict.fromkeys(reasons.values())))
            continue
        snapshot = ctx.b2_before[fmt] = Snapshot.of(intact)
        described.append(f"{fmt} intact on B2 ({_files_text(snapshot)})")
        if records.copies(fmt, opts.ll_storage_id, active_only=False):
            notes.append(f"its {fmt} is already on LucidLink before the test"
                         + ("" if opts.keep else "; step 3 removes it from there (B2 keeps it)"))
    title = f"{ctx.asset_title!r}" if ctx.asset_title else opts.asset_id
    if problems:
        return failed(f"asset {title}: " + "; ".join(problems) + ". The self-test needs an asset whose "
                      "formats are intact on B2; refusing to start", notes)
    return passed(f"asset {title}: " + ", ".join(described), notes)


# -- steps 2 and 3: the custom actions, as iconik sends them ---------------------------


def action_body(ctx: Context, verb: str) -> dict:
    """The JSON iconik POSTs when a user runs the ASSET custom action on this one asset."""
    action = ctx.actions.get(("ASSET", verb))
    return {
        "user_id": None,
        "system_domain_id": None,
        "context": "ASSET",
        "action_id": (action.id if action and action.id else str(uuid.uuid4())),
        "asset_ids": [ctx.options.asset_id],
        "collection_ids": [],
        "saved_search_ids": [],
        "metadata_view_id": None,
        "metadata_values": None,
        "date_created": datetime.now(timezone.utc).replace(tzinfo=None).isoformat(),
        "auth_token": ctx.settings.token,
    }


def post_action(ctx: Context, verb: str) -> Result:
    opts = ctx.options
    url = ca.action_url(ctx.endpoint, verb, opts.b2_storage_id, opts.ll_storage_id, opts.formats)
    response = ctx.http.post(url, json=action_body(ctx, verb), headers={SECRET_HEADER: ctx.settings.secret},
                             timeout=HTTP_TIMEOUT)
    try:
        body = response.json()
    except ValueError:
        body = {}
    job_id = body.get("job_id") if isinstance(body, dict) else None
    if response.status_code != 202 or not job_id:
        return failed(f"the plugin refused {VERB_TITLE[verb]!r}: HTTP {response.status_code} ({_error_of(response)})")
    ctx.job_ids[verb] = job_id
    return passed(f"POST /{verb} accepted (HTTP 202): job {job_id}")


def follow_job(ctx: Context, verb: str) -> Result:
    """Poll GET /jobs/<id> until the job ends; it must succeed with the expected result per format."""
    job_id = ctx.job_ids[verb]
    url = f"{ctx.endpoint}/jobs/{job_id}"
    deadline = time.monotonic() + ctx.options.timeout
    interval = ctx.options.poll
    last_seen = None
    while True:
        response = ctx.http.get(url, headers={SECRET_HEADER: ctx.settings.secret}, timeout=HTTP_TIMEOUT)
        if response.status_code != 200:
            return failed(f"GET /jobs/{job_id} answered HTTP {response.status_code} ({_error_of(response)})")
        view = response.json()
        seen = (view.get("status"), view.get("phase"))
        if seen != last_seen:
            last_seen = seen
            ctx.report_progress(f"job {job_id}: {seen[0]}, phase {seen[1]}")
        if view.get("status") in JOB_FINAL:
            break
        if time.monotonic() >= deadline:
            return failed(f"job {job_id} is still {view.get('status')} (phase {view.get('phase')}) after "
                          f"{ctx.options.timeout:.0f} s; it goes on in the plugin: GET {url} shows how it ends "
                          "(raise --timeout for large test assets)")
        time.sleep(interval)
        interval = min(interval * 1.5, max(ctx.options.poll, 10.0))
    return judge_job(ctx, verb, view)


def judge_job(ctx: Context, verb: str, view: dict) -> Result:
    opts = ctx.options
    rows = view.get("outcomes") or []
    others = sorted({row.get("asset_id") for row in rows} - {opts.asset_id})
    if others:
        return failed(f"job {view.get('job_id')} reports on other assets than {opts.asset_id}: {', '.join(others)}")
    wanted = EXPECTED_RESULT[verb]
    results = {row.get("format"): row for row in rows}
    wrong = []
    for fmt in opts.formats:
        row = results.get(fmt)
        if row is None:
            wrong.append(f"{fmt}: no outcome")
        elif row.get("result") != wanted:
            wrong.append(f"{fmt}: {row.get('result')}: {row.get('reason')}")
    notes = [f"warning from the job: {w}" for w in view.get("warnings") or []]
    if view.get("status") != "succeeded" or wrong:
        detail = f"the {VERB_TITLE[verb]!r} job {view.get('job_id')} {view.get('status')}"
        if view.get("error"):
            detail += f": {view['error']}"
        if wrong:
            detail += "; " + "; ".join(wrong)
        elif view.get("message"):
            detail += f": {view['message']}"
        return failed(detail, notes)
    return passed(f"job {view.get('job_id')} succeeded: " + ", ".join(f"{fmt} {wanted}" for fmt in opts.formats),
                  notes)


def check_lucidlink_copy(ctx: Context, *, sleep=time.sleep) -> Result:
    """Through iconik: a copy of each format on LucidLink, every file CLOSED, with the B2 copy's
    file names, sizes and (where both are known and comparable) checksums."""
    deadline = time.monotonic() + ctx.options.checksum_wait
    while True:
        problems, described, notes, pending = _lucidlink_copy_state(ctx, read_records(ctx))
        if problems or not pending or time.monotonic() >= deadline:
            break
        # The gateway fills in a checksum some time after the file closes.
        sleep(min(ctx.options.poll, max(0.0, deadline - time.monotonic())))
    if problems:
        return failed("LucidLink copy: " + "; ".join(problems) + " (left in place for inspection)", notes)
    return passed("LucidLink copy complete: " + ", ".join(described), notes)


def _lucidlink_copy_state(ctx: Context, records: Records) -> tuple[list[str], list[str], list[str], bool]:
    """(problems, descriptions, notes, whether some LucidLink checksum is still to come)."""
    opts = ctx.options
    problems, described, notes = [], [], []
    pending = False
    for fmt, snapshot in ctx.b2_before.items():
        b2 = recorded_b2_copy(records, ctx, fmt, snapshot)
        if (problem := snapshot_problem(b2, snapshot)) is not None:
            problems.append(f"{fmt}: the B2 copy it is compared with changed: {problem}")
            continue
        on_ll = records.copies(fmt, opts.ll_storage_id, active_only=True)
        if not on_ll:
            problems.append(f"iconik lists no {fmt} copy on {_storage_label(ctx, 'LucidLink')}")
            continue
        for copy in on_ll:
            open_files = sorted(f"{_name(f)} is {f.get('status')}" for f in copy.files if f.get("status") != "CLOSED")
            names_ll, names_b2 = {_name(f) for f in copy.files}, set(snapshot.files)
            if open_files:
                problems.append(f"{fmt} file set {copy.id}: not complete ({', '.join(open_files)})")
            elif names_ll != names_b2:
                problems.append(f"{fmt} file set {copy.id}: files {sorted(names_ll)} differ from B2's "
                                f"{sorted(names_b2)}")
            else:
                verdict = check_b2_copy(copy, b2)
                if not verdict.safe:
                    problems.append(f"{fmt} file set {copy.id} does not match the B2 copy: {verdict.reason}")
                else:
                    pending = pending or any(not f.get("checksum") and snapshot.files[_name(f)][1]
                                             for f in copy.files)
                    described.append(f"{fmt} CLOSED, {_files_text(snapshot)}, "
                                     + ("same size" if verdict.note else "same size and checksum") + " as on B2")
                    if verdict.note:
                        notes.append(f"{fmt}: {verdict.note}")
    return problems, described, notes, pending


def recorded_b2_copy(records, ctx: Context, fmt: str, snapshot):
    """The B2 file set that step 1 recorded, as iconik lists it now (None if gone)."""
    return next((c for c in records.copies(fmt, ctx.options.b2_storage_id, active_only=False)
                 if c.id == snapshot.file_set_id), None)


def b2_changes(ctx: Context) -> list[str]:
    """How the B2 copies differ now from what step 1 recorded; empty when unchanged."""
    records = read_records(ctx)
    problems = []
    for fmt, snapshot in ctx.b2_before.items():
        if (problem := snapshot_problem(recorded_b2_copy(records, ctx, fmt, snapshot), snapshot)) is not None:
            problems.append(f"{fmt}: {problem}")
    return problems


def check_b2_before_remove(ctx: Context) -> Result:
    """Refuse to post Remove unless the B2 copy recorded in step 1 is still intact."""
    problems = b2_changes(ctx)
    if problems:
        return failed("refusing to post 'Remove from LucidLink': the B2 copy is not intact: " + "; ".join(problems))
    return passed("B2 copy still intact: " + ", ".join(f"{fmt} ({_files_text(s)})" for fmt, s in ctx.b2_before.items()))


def check_lucidlink_gone(ctx: Context) -> Result:
    records = read_records(ctx)
    left = [f"{fmt} (file set {copy.id}, {copy.file_set.get('status')})"
            for fmt in ctx.options.formats
            for copy in records.copies(fmt, ctx.options.ll_storage_id, active_only=False)]
    if left:
        return failed(f"iconik still lists on {_storage_label(ctx, 'LucidLink')}: {', '.join(left)}")
    return passed("no copy of " + ", ".join(ctx.options.formats) + " left on LucidLink")


def check_b2_after(ctx: Context) -> Result:
    problems = b2_changes(ctx)
    if problems:
        return failed("the B2 copy is not intact after the removal: " + "; ".join(problems))
    return passed("B2 copy intact and unchanged (ACTIVE, files CLOSED, same sizes and checksums): "
                  + ", ".join(f"{fmt} ({_files_text(s)})" for fmt, s in ctx.b2_before.items()))


def _error_of(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return (response.text or response.reason or "").strip()[:200] or "no message"
    if isinstance(body, dict) and body.get("error"):
        return str(body["error"])[:300]
    return str(body)[:200]


# -- the whole run ---------------------------------------------------------------------


def run_selftest(ctx: Context, report: Report) -> Report:
    ctx.report_progress = report.progress
    step = report.step("check the configuration")
    report.run("storages", lambda: check_storages(ctx))
    plugin = report.run("plugin answers", lambda: check_plugin(ctx))
    if plugin.ok:
        report.run("shared secret", lambda: check_secret(ctx))
    else:
        report.skip("shared secret", "not checked: the plugin does not answer", counts_as_failure=True)
    report.run("custom actions", lambda: check_custom_actions(ctx))
    report.run("asset on B2", lambda: check_asset(ctx))
    ready = not step.failures and not any(r.skipped and not r.ok for r in step.results)

    report.step("Add to LucidLink")
    add_names = ("post Add", "Add job", "LucidLink copy")
    added = False
    if not ready:
        for name in add_names:
            report.skip(name, "not run: the configuration has problems (step 1); nothing was posted",
                        counts_as_failure=True)
    else:
        added = _run_chain(report, [
            (add_names[0], lambda: post_action(ctx, "add")),
            (add_names[1], lambda: follow_job(ctx, "add")),
            (add_names[2], lambda: check_lucidlink_copy(ctx)),
        ])

    report.step("Remove from LucidLink")
    remove_names = ("B2 copy before", "post Remove", "Remove job", "LucidLink copy gone", "B2 copy after")
    if ctx.options.keep and added:
        for name in remove_names:
            report.skip(name, "not run: --keep leaves the asset on LucidLink")
    elif not added:
        for name in remove_names:
            report.skip(name, "not run: step 2 did not pass", counts_as_failure=True)
    else:
        _run_chain(report, [
            (remove_names[0], lambda: check_b2_before_remove(ctx)),
            (remove_names[1], lambda: post_action(ctx, "remove")),
            (remove_names[2], lambda: follow_job(ctx, "remove")),
            (remove_names[3], lambda: check_lucidlink_gone(ctx)),
            (remove_names[4], lambda: check_b2_after(ctx)),
        ])
    return report


def _run_chain(report: Report, checks: list[tuple[str, Callable[[], Result]]]) -> bool:
    """Run checks in order; after the first failure the rest are skipped. True if all passed."""
    for index, (name, check) in enumerate(checks):
        if not report.run(name, check).ok:
            for later, _ in checks[index + 1:]:
                report.skip(later, f"not run: {name!r} failed", counts_as_failure=True)
            return False
    return True


def closing_words(ctx: Context, report: Report) -> str:
    asset = f"asset {ctx.options.asset_id}"
    if report.ok:
        if ctx.options.keep:
            return (f"{asset} stays on LucidLink (--keep); run 'Remove from LucidLink' on it in iconik "
                    "to free the space")
        return f"{asset} is on B2 only again; the deployment works end to end"
    advice = "Fix what the failed checks say, then run the self-test again."
    if ctx.job_ids.get("add"):
        return f"{lucidlink_now(ctx)} {advice}"
    return advice


def lucidlink_now(ctx: Context) -> str:
    """Where the test left the asset, after a failure once something was posted."""
    asset = f"asset {ctx.options.asset_id}"
    try:
        records = read_records(ctx)
    except iconik.IconikError as error:
        return f"Could not check what {asset} has on LucidLink now ({ca.describe_error(error)})."
    left = [f"{fmt} (file set {copy.id})" for fmt in ctx.options.formats
            for copy in records.copies(fmt, ctx.options.ll_storage_id, active_only=False)]
    if left:
        return f"{asset} has on LucidLink now: {', '.join(left)}; inspect it, then remove it in iconik."
    return f"{asset} has nothing on LucidLink now."


# -- command line -------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m b2iconik.selftest",
        description="Prove a deployment of b2-iconik-plugin end to end with one test asset whose "
                    "ORIGINAL is on B2: check the configuration, Add it to LucidLink, Remove it again.",
        epilog="Settings: ICONIK_ID, ICONIK_TOKEN, BZ_SHARED_SECRET (32+ characters), ICONIK_URL and, "
               "optionally, PLUGIN_B2_STORAGE_ID and PLUGIN_LL_STORAGE_ID (environment or .env). "
               "Exit status: 0 all checks passed, 1 a check failed, 2 bad arguments or settings.")
    parser.add_argument("--endpoint", required=True, help="the plugin's base URL, as in the custom actions")
    parser.add_argument("--b2-storage", "--b2_storage_id", dest="b2_storage",
                        help="id of the iconik storage on Backblaze B2 (default: PLUGIN_B2_STORAGE_ID)")
    parser.add_argument("--ll-storage", "--ll_storage_id", dest="ll_storage",
                        help="id of the iconik storage on LucidLink (storage gateway) (default: PLUGIN_LL_STORAGE_ID)")
    parser.add_argument("--asset",
                        help="id of the test asset (its formats must be intact on B2); no other asset is touched "
                             "(required)")
    parser.add_argument("--formats", default=",".join(DEFAULT_FORMATS),
                        help="comma-separated formats to copy and remove (default: ORIGINAL)")
    parser.add_argument("--keep", action="store_true",
                        help="leave the asset on LucidLink after step 2 (skip step 3)")
    parser.add_argument("--env-file", help="read settings from this file (its values win over the environment)")
    parser.add_argument("--iconik-url", help="override ICONIK_URL")
    parser.add_argument("--iconik-id", help="override ICONIK_ID")
    parser.add_argument("--timeout", type=float, default=1800.0,
                        help="seconds to wait for each job (default: 1800)")
    parser.add_argument("--poll", type=float, default=2.0, help="seconds between job polls (default: 2)")
    parser.add_argument("--checksum-wait", type=float, default=60.0,
                        help="seconds to wait for the gateway to fill in LucidLink checksums (default: 60)")
    return parser


def load_environment(env_file: str | None, environ: Mapping[str, str] | None) -> dict[str, str]:
    """The settings to use: environment over .env; a named --env-file over the environment.

    With an explicit `environ` (tests), no .env is looked for unless `env_file` is given.
    """
    base = dict(os.environ if environ is None else environ)
    if env_file:
        path = Path(env_file)
        if not path.is_file():
            raise ca.UsageError(f"--env-file {env_file}: no such file")
        values = {k: v for k, v in dotenv_values(path).items() if v is not None}
        return {**base, **values}
    if environ is None:
        found = find_dotenv(usecwd=True)
        if found:
            values = {k: v for k, v in dotenv_values(found).items() if v is not None}
            return {**values, **base}
    return base


def make_context(args: argparse.Namespace, environ: Mapping[str, str] | None) -> tuple[Context, list[str]]:
    """Check the arguments and settings (UsageError) and build the context; no network yet."""
    env = load_environment(args.env_file, environ)
    if args.iconik_url:
        env["ICONIK_URL"] = args.iconik_url
    if args.iconik_id:
        env["ICONIK_ID"] = args.iconik_id
    b2, ll, missing = ca.pinned_storages(args.b2_storage, args.ll_storage, ca.storage_pins(env),
                                         ("--b2-storage", "--ll-storage"))
    if not (args.asset or "").strip():
        missing.append("--asset")
    if missing:
        raise ca.UsageError("missing " + ", ".join(missing))
    settings = ca.load_settings(env)
    if not settings.url.startswith(("http://", "https://")):
        raise ca.UsageError(f"ICONIK_URL must be an http(s) URL, not {settings.url!r}")
    endpoint, warnings = ca.check_endpoint(args.endpoint)
    if b2 == ll:
        raise ca.UsageError("--b2-storage and --ll-storage are the same storage; they must be different")
    try:
        asset = iconik.check_uuid((args.asset or "").strip(), "--asset")
    except ValueError as error:
        raise ca.UsageError(str(error)) from None
    formats = ca.parse_formats(args.formats)
    if not formats:
        raise ca.UsageError("--formats names no format")
    for name, value in (("--timeout", args.timeout), ("--poll", args.poll), ("--checksum-wait", args.checksum_wait)):
        if not value >= 0:
            raise ca.UsageError(f"{name} must be a number of seconds, at least 0")
    options = Options(endpoint, b2, ll, asset, formats, args.keep, args.timeout, max(args.poll, 0.01),
                      args.checksum_wait)
    client = settings.client(max_rps=20, attempts=3, max_backoff=5.0)
    http = requests.Session()
    http.headers["User-Agent"] = "b2-iconik-plugin-selftest"
    return Context(options, settings, client, http), warnings


def main(argv: list[str] | None = None, *, environ: Mapping[str, str] | None = None,
         out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        ctx, warnings = make_context(args, environ)
    except ca.UsageError as error:
        print(f"error: {error}", file=err)
        return 2
    report = Report(out)
    opts = ctx.options
    report.line("b2-iconik-plugin self-test")
    report.line(f"  endpoint           {opts.endpoint}")
    report.line(f"  iconik             {ctx.settings.url}")
    report.line(f"  B2 storage         {opts.b2_storage_id}")
    report.line(f"  LucidLink storage  {opts.ll_storage_id}")
    report.line(f"  asset              {opts.asset_id}   formats {','.join(opts.formats)}"
                + ("   (--keep)" if opts.keep else ""))
    for warning in warnings:
        report.line(f"  warning: {warning}")
    try:
        with ctx.client, ctx.http:
            run_selftest(ctx, report)
    except KeyboardInterrupt:
        report.line()
        report.line("interrupted: jobs already posted go on in the plugin")
        return 130
    report.summary(closing_words(ctx, report))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
