"""Which version runs (issue 26.4): `--version`, `GET /` and the build_info metric say the
pyproject.toml version; and each job's end is timed into a histogram by action and status."""

from __future__ import annotations

import subprocess
import sys
import tomllib

import requests
from prometheus_client import REGISTRY

from b2iconik import version as version_module
from b2iconik.server import metrics
from tests.helpers.harness import ROOT, plugin_settings, serve_plugin

PYPROJECT_VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_python_m_b2iconik_version_prints_the_pyproject_version():
    done = subprocess.run([sys.executable, "-m", "b2iconik", "--version"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, f"b2-iconik-plugin {PYPROJECT_VERSION}\n", "")


def test_the_version_is_the_checkouts_else_the_installed_distributions(tmp_path, monkeypatch):
    def fresh():
        version_module.version.cache_clear()
        return version_module.version()

    try:
        assert fresh() == PYPROJECT_VERSION
        other = tmp_path / "pyproject.toml"  # a site-packages with some other project's file beside the package
        other.write_text('[project]\nname = "something-else"\nversion = "7.0"\n')
        monkeypatch.setattr(version_module, "PYPROJECT", other)
        monkeypatch.setattr(version_module.metadata, "version",
                            lambda name: {"b2-iconik-plugin": "2.3.4"}[name])
        assert fresh() == "2.3.4"
        monkeypatch.setattr(version_module, "PYPROJECT", tmp_path / "none.toml")
        assert fresh() == "2.3.4"

        def not_installed(name):
            raise version_module.metadata.PackageNotFoundError(name)

        monkeypatch.setattr(version_module.metadata, "version", not_installed)
        assert fresh() == "unknown"
    finally:
        monkeypatch.undo()
        version_module.version.cache_clear()


def test_get_slash_and_build_info_name_the_version(emulator, tmp_path, quick_runner):
    with serve_plugin(plugin_settings(emulator, tmp_path / "state")) as plugin:
        ready = requests.get(plugin.url + "/", timeout=5).json()
    assert ready["version"] == PYPROJECT_VERSION and ready["status"] == "ready"
    families = [f for f in REGISTRY.collect() if f.name == "b2iconik_build_info"]
    assert [(s.labels["version"], s.value) for f in families for s in f.samples] == [(PYPROJECT_VERSION, 1)]


def sample(name, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_finished_job_is_timed_from_its_click_to_its_end(emulator, tmp_path, quick_runner):
    emu = emulator
    b2, ll = emu.add_storage("B2", method="B2"), emu.add_storage("LucidLink", method="FILE")
    asset = emu.add_asset("timed")
    emu.add_file(asset, "ORIGINAL", b2, "timed.mov", b"frames " * 100)
    labels = {"action": "add", "status": "succeeded"}
    before = {name: sample(f"b2iconik_job_duration_seconds_{name}", **labels) for name in ("count", "sum")}
    below_one_second = sample("b2iconik_job_duration_seconds_bucket", le="1.0", **labels)
    with serve_plugin(plugin_settings(emu, tmp_path / "state")) as plugin:
        job = plugin.wait(plugin.post(emu, "add", b2, ll, asset_ids=[asset]).json()["job_id"])
        assert job["status"] == "succeeded"
    assert sample("b2iconik_job_duration_seconds_count", **labels) == before["count"] + 1
    took = sample("b2iconik_job_duration_seconds_sum", **labels) - before["sum"]
    # timed on the store's clock, just after the end was recorded
    assert job["finished_at"] - job["created_at"] <= took < job["finished_at"] - job["created_at"] + 5
    in_bucket = sample("b2iconik_job_duration_seconds_bucket", le="1.0", **labels) - below_one_second
    assert in_bucket == (1 if took <= 1 else 0)
    assert metrics.JOB_DURATION._upper_bounds[-2] == 86400  # a day: Removes that wait hours for B2 copies
