"""Step 1 of the self-test: the configuration, checked before anything is posted.

The storages, the plugin's answer and shared secret, the custom actions, and the
test asset's copies on B2 (whose snapshot steps 2 and 3 compare with).
"""

from __future__ import annotations

import hmac
import uuid

import iconik
from b2iconik import cli
from b2iconik import custom_actions as ca
from b2iconik.selftest.context import (HTTP_TIMEOUT, SECRET_HEADER, VERB_TITLE, Context, Snapshot, b2_copy_problem,
                                       error_of, files_text, read_records, role_storage)
from b2iconik.selftest.results import Result, failed, passed


def check_configured_storages(ctx: Context) -> Result:
    """Both storages exist, are Files storages, and are different (checked before)."""
    warnings, _ = cli.storage_warnings(ctx.client, ctx.options.b2_storage_id, ctx.options.ll_storage_id)
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
                      f"({error_of(health)}): its job store (PLUGIN_STATE_DIR) cannot record jobs; "
                      "see the plugin's log", notes)
    return passed(f"{ctx.endpoint} answers as b2-iconik-plugin ({body.get('status')}); /healthz ok", notes)


def check_plugin_secret(ctx: Context) -> Result:
    """The plugin accepts BZ_SHARED_SECRET: asking for a job that cannot exist gives 404, not 401."""
    probe = str(uuid.uuid4())
    response = ctx.http.get(f"{ctx.endpoint}/jobs/{probe}", headers={SECRET_HEADER: ctx.settings.secret},
                            timeout=HTTP_TIMEOUT)
    if response.status_code == 404:
        return passed("the plugin accepts BZ_SHARED_SECRET")
    if response.status_code == 401:
        return failed(f"the plugin rejected BZ_SHARED_SECRET ({error_of(response)}): the plugin runs with "
                      "another BZ_SHARED_SECRET than the one given here; give both the same secret "
                      "(and re-run create_custom_actions.py so that iconik sends it)")
    return failed(f"GET {ctx.endpoint}/jobs/<id> answered HTTP {response.status_code} "
                  f"({error_of(response)}), not 404 or 401")


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
            problems.append(f"its {fmt} is not on {role_storage(ctx, 'B2')}")
            continue
        reasons = {copy.id: b2_copy_problem(copy) for copy in b2_copies}
        intact = next((copy for copy in b2_copies if reasons[copy.id] is None), None)
        if intact is None:
            problems.append(f"its {fmt} on B2 is not intact: " + "; ".join(dict.fromkeys(reasons.values())))
            continue
        snapshot = ctx.b2_before[fmt] = Snapshot.of(intact)
        described.append(f"{fmt} intact on B2 ({files_text(snapshot)})")
        if records.copies(fmt, opts.ll_storage_id, active_only=False):
            notes.append(f"its {fmt} is already on LucidLink before the test"
                         + ("" if opts.keep else "; step 3 removes it from there (B2 keeps it)"))
    title = f"{ctx.asset_title!r}" if ctx.asset_title else opts.asset_id
    if problems:
        return failed(f"asset {title}: " + "; ".join(problems) + ". The self-test needs an asset whose "
                      "formats are intact on B2; refusing to start", notes)
    return passed(f"asset {title}: " + ", ".join(described), notes)
