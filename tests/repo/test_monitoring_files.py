"""The monitoring files under deploy/ (issue 26.5): the alert rules pass `promtool check rules` and
their unit test, the scrape example is a valid configuration, the rules and the Grafana dashboard
query only metrics the plugin exports, and a real Prometheus scrapes a real plugin under gunicorn.

promtool and prometheus come from Debian's package `prometheus`; where they are absent the tests
that run them are skipped, saying so. The rest read the files only.
"""

from __future__ import annotations

import json
import platform
import re
import shutil
import subprocess
import tempfile
import time

import pytest
import requests
import yaml
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from b2iconik.config import DEFAULT_METRICS_PORT
from b2iconik.jobs.store import JobStore
from b2iconik.server import metrics
from b2iconik.server.metrics_server import StoreCollector
from b2iconik.version import version
from tests.helpers.harness import ROOT, SECRET, free_port, plugin_settings, run_gunicorn, run_server, settings_env, wait_for_job

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERTS_TEST = PROMETHEUS_DIR / "alerts_test.yml"
SCRAPE_EXAMPLE = PROMETHEUS_DIR / "prometheus.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "b2iconik-dashboard.json"

MISSING = "not installed: Debian's package `prometheus` brings it (apt-get install prometheus)"
needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason=f"promtool {MISSING}")
needs_prometheus = pytest.mark.skipif(shutil.which("prometheus") is None, reason=f"prometheus {MISSING}")

# The series each kind of metric family exposes under gunicorn (multiprocess mode has no _created).
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
# Labels Prometheus adds to every series it scrapes, and the histogram's bucket label.
ADDED_LABELS = {"job", "instance", "le"}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
                "offset", "inf", "nan"}
GRAFANA_VARIABLES = {"$instance": ".*", "$__rate_interval": "1m"}


def exported() -> dict[str, set[str]]:
    """Every series name the plugin's metrics endpoint can expose, with its label names: this
    process's registry (b2iconik/server/metrics.py) and the job store's gauges (metrics_server.py)."""
    store_dir = tempfile.mkdtemp(prefix="b2iconik-monitoring-")
    try:
        store = JobStore(store_dir)
        store.create("add", {}, None)  # so that the labelled store gauge has a series
        store.close()
        store_registry = CollectorRegistry()
        store_registry.register(StoreCollector(store_dir))
        text = generate_latest(REGISTRY).decode() + generate_latest(store_registry).decode()
    finally:
        shutil.rmtree(store_dir, ignore_errors=True)
    declared = {m._name: set(m._labelnames) for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)}
    names = {}
    for family in text_string_to_metric_families(text):
        # (this process also shows the counters' _created series; gunicorn's multiprocess mode does not)
        if family.name.startswith("b2iconik_") and not family.name.endswith("_created"):
            labels = declared.get(family.name, set()) | {k for s in family.samples for k in s.labels} - {"le"}
            for suffix in SUFFIXES[family.type]:
                names[family.name + suffix] = labels
    return names


def rule_expressions() -> list[str]:
    rules = yaml.safe_load(ALERTS.read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    """The PromQL of every panel's targets and of the query variables (label_values(metric, label))."""
    board = json.loads(DASHBOARD.read_text())
    found = [target["expr"] for panel in board["panels"] for target in panel["targets"]]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            metric = re.fullmatch(r"label_values\((.+),\s*\w+\)", query)
            assert metric, f"variable {variable['name']}: {query}"
            found.append(metric.group(1))
    return found


def parse(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, label names) an expression uses."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)  # string literals
    labels = set(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", "".join(re.findall(r"\{[^}]*\}", text))))
    for words in re.findall(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", text):
        labels |= {word.strip() for word in words.split(",") if word.strip()}
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)  # matchers and ranges
    names = {word for word in re.findall(r"(?<![\w.$])[A-Za-z_:][\w:]*(?![\w:]|\s*\()", text)
             if word not in PROMQL_WORDS}
    return names, labels


def test_the_expression_parser_finds_metrics_and_labels_and_nothing_else():
    names, labels = parse('sum by (instance, action) (increase(b2iconik_jobs_finished_total{status="failed", '
                          'x=~"a|b"}[1h])) / on (instance) group_left b2iconik_build_info > 0.05 and bool 1e3')
    assert names == {"b2iconik_jobs_finished_total", "b2iconik_build_info"}
    assert labels == {"instance", "action", "status", "x"}
    assert parse('histogram_quantile(0.95, sum by (le) (rate(up{job="a"}[$__rate_interval])))') == ({"up"},
                                                                                                    {"le", "job"})


def test_the_rules_and_the_dashboard_use_only_metrics_and_labels_the_plugin_exports():
    names = exported()
    assert {"b2iconik_build_info", "b2iconik_job_duration_seconds_bucket", "b2iconik_jobs_finished_total",
            "b2iconik_jobs", "b2iconik_oldest_waiting_job_age_seconds"} <= set(names)
    assert names["b2iconik_build_info"] == {"version", "python"}
    assert names["b2iconik_job_duration_seconds_count"] == {"action", "status"}
    every_label = set().union(*names.values()) | ADDED_LABELS
    used = set()
    for where, expressions in (("alerts.yml", rule_expressions()), ("the dashboard", dashboard_expressions())):
        assert expressions, where
        for expr in expressions:
            metric_names, labels = parse(expr)
            assert metric_names, f"{where}: no metric in {expr!r}"
            unknown = metric_names - set(names)
            assert not unknown, f"{where}: {expr!r} uses {unknown}, which the plugin does not export"
            assert labels <= every_label, f"{where}: {expr!r} uses labels {labels - every_label}"
            used |= metric_names
    # The dashboard and the rules between them show every family the plugin exports.
    families = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in names}
    shown = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in used}
    assert families == shown, families - shown


def test_the_dashboard_is_a_grafana_dashboard_on_a_chosen_prometheus():
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"] and board["title"] == "b2-iconik-plugin" and board["schemaVersion"] >= 36
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"] and panel["type"] in ("stat", "timeseries"), panel["title"]
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"]), panel["title"]
        assert all('instance=~"$instance"' in t["expr"] for t in panel["targets"]), panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]


def test_every_alert_has_a_unit_test_that_makes_it_fire():
    alerts = {rule["alert"] for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]}
    cases = [case for test in yaml.safe_load(ALERTS_TEST.read_text())["tests"] for case in test["alert_rule_test"]]
    fired = {case["alertname"] for case in cases if case["exp_alerts"]}
    quiet = {case["alertname"] for case in cases if not case["exp_alerts"]}
    assert alerts == fired == quiet, (alerts, fired, quiet)


@needs_promtool
def test_promtool_accepts_the_alert_rules():
    done = subprocess.run(["promtool", "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@needs_promtool
def test_the_alert_rules_pass_their_promtool_unit_test():
    done = subprocess.run(["promtool", "test", "rules", ALERTS_TEST.name], cwd=PROMETHEUS_DIR, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@needs_promtool
def test_the_scrape_example_is_valid_and_scrapes_the_default_metrics_address():
    done = subprocess.run(["promtool", "check", "config", SCRAPE_EXAMPLE.name], cwd=PROMETHEUS_DIR,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    config = yaml.safe_load(SCRAPE_EXAMPLE.read_text())
    assert config["rule_files"] == [ALERTS.name]
    [job] = config["scrape_configs"]
    assert job["static_configs"] == [{"targets": [f"127.0.0.1:{DEFAULT_METRICS_PORT}"]}]


# -- a real Prometheus scrapes a real plugin ----------------------------------------------------

def query(url: str, expr: str) -> list[dict]:
    answer = requests.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert answer["status"] == "success", (expr, answer)
    return answer["data"]["result"]


def until(predicate, what: str, timeout: float = 90.0):
    deadline = time.monotonic() + timeout
    while True:
        got = predicate()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


@needs_prometheus
def test_a_real_prometheus_scrapes_the_plugin_and_runs_the_rules_and_the_dashboard_queries(emulator, tmp_path):
    emu = emulator
    b2, ll = emu.add_storage("B2 archive", method="B2"), emu.add_storage("LucidLink", method="FILE")
    asset = emu.add_asset("scraped")
    emu.add_file(asset, "ORIGINAL", b2, "scraped.mov", b"frames " * 200)
    metrics_port, prometheus_port = free_port(), free_port()
    env = {**settings_env(plugin_settings(emu, tmp_path / "state")), "LOG_LEVEL": "WARNING",
           "PLUGIN_METRICS_PORT": str(metrics_port)}
    # The scrape example, pointed at this plugin and scraping every second.
    config = yaml.safe_load(SCRAPE_EXAMPLE.read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(ALERTS)]
    config["scrape_configs"][0]["static_configs"] = [{"targets": [f"127.0.0.1:{metrics_port}"]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    command = [shutil.which("prometheus"), f"--config.file={tmp_path / 'prometheus.yml'}",
               f"--web.listen-address=127.0.0.1:{prometheus_port}", f"--storage.tsdb.path={tmp_path / 'tsdb'}"]

    with run_gunicorn(env, workers=2) as (url, _), open(tmp_path / "prometheus.log", "w+b") as log, \
            run_server(command, {}, prometheus_port, log, name="prometheus", start_timeout=60) as (prom, _):
        answer = emu.post_custom_action(f"{url}/add?b2_storage_id={b2}&ll_storage_id={ll}",
                                        headers={"x-bz-secret": SECRET}, asset_ids=[asset])
        assert answer.status_code == 202, answer.text
        assert wait_for_job(url, answer.json()["job_id"], timeout=60)["status"] == "succeeded"

        [info] = until(lambda: query(prom, "b2iconik_build_info"), "Prometheus to scrape b2iconik_build_info")
        assert info["metric"] == {"__name__": "b2iconik_build_info", "job": "b2-iconik-plugin",
                                  "instance": f"127.0.0.1:{metrics_port}", "version": version(),
                                  "python": platform.python_version()}
        assert info["value"][1] == "1"
        [duration] = until(lambda: query(prom, 'b2iconik_job_duration_seconds_count{action="add"}'),
                           "the add's duration to be scraped")
        assert duration["metric"]["status"] == "succeeded" and duration["value"][1] == "1"
        assert query(prom, 'b2iconik_job_duration_seconds_bucket{action="add", le="+Inf"}')[0]["value"][1] == "1"

        # Every series Prometheus took from the plugin is one the plugin is known to export.
        scraped = requests.get(f"{prom}/api/v1/label/__name__/values",
                               params={"match[]": '{job="b2-iconik-plugin"}'}, timeout=10).json()["data"]
        ours = {name for name in scraped if name.startswith("b2iconik_")}
        assert {"b2iconik_jobs_finished_total", "b2iconik_job_runner_running", "b2iconik_jobs"} <= ours
        assert ours <= set(exported()), ours - set(exported())

        # The rules load and evaluate; the healthy plugin sets none of them off.
        def evaluated():
            groups = requests.get(f"{prom}/api/v1/rules", timeout=10).json()["data"]["groups"]
            rules = [rule for group in groups for rule in group["rules"]]
            return rules if rules and all(rule["health"] == "ok" for rule in rules) else None

        rules = until(evaluated, "every rule to be evaluated")
        assert {rule["name"] for rule in rules} == {rule["alert"] for group in yaml.safe_load(ALERTS.read_text())[
            "groups"] for rule in group["rules"]}
        # (the scrapes before the runner started may have made one pending for a moment)
        until(lambda: all(rule["state"] == "inactive" for rule in evaluated() or [{}]), "every rule to be quiet")

        # Each of the dashboard's queries is PromQL that Prometheus answers.
        for expr in dashboard_expressions():
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            query(prom, expr)
