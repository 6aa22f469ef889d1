"""Settings: required ones refused clearly, every setting documented."""

import re
import subprocess
import sys

import pytest

from b2iconik.config import ConfigError, Settings
from tests.helpers.harness import ROOT

GOOD_SECRET = "config-test-secret-0123456789abcdef"
SOURCES = ["plugin.py", "main.py", "gunicorn.conf.py", "iconik.py", *map(str, (ROOT / "b2iconik").glob("*.py")),
           *map(str, (ROOT / "b2iconik" / "cloud").glob("*.py"))]


def test_missing_required_settings_are_named():
    with pytest.raises(ConfigError, match="ICONIK_ID, BZ_SHARED_SECRET"):
        Settings.from_env({})
    with pytest.raises(ConfigError, match="BZ_SHARED_SECRET"):
        Settings.from_env({"ICONIK_ID": "app"})


@pytest.mark.parametrize("name,value", [("ICONIK_MAX_RPS", "fast"), ("PLUGIN_JOB_WORKERS", "0"),
                                        ("FORMAT_NAMES", "ORIGINAL,,PROXY"), ("ICONIK_URL", "ftp://x")])
def test_malformed_settings_are_refused_with_their_name(name, value):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({"ICONIK_ID": "app", "BZ_SHARED_SECRET": GOOD_SECRET, name: value})


def test_defaults_and_a_repr_without_secrets():
    settings = Settings.from_env({"ICONIK_ID": "app", "BZ_SHARED_SECRET": GOOD_SECRET,
                                  "ICONIK_TOKEN": "token-value"})
    assert settings.formats == ("ORIGINAL", "PPRO_PROXY")
    assert settings.iconik_url == "https://app.iconik.io"
    assert GOOD_SECRET not in repr(settings) and "token-value" not in repr(settings)


def test_a_shared_secret_shorter_than_32_characters_is_refused():
    with pytest.raises(ConfigError, match=r"BZ_SHARED_SECRET is 31 characters; it must be at least 32 "
                                          r"\(make one with: openssl rand -hex 32\)"):
        Settings.from_env({"ICONIK_ID": "app", "BZ_SHARED_SECRET": "x" * 31})
    with pytest.raises(ConfigError, match="is 31 characters"):  # surrounding blanks do not count
        Settings.from_env({"ICONIK_ID": "app", "BZ_SHARED_SECRET": "  " + "x" * 31 + "  "})
    assert Settings.from_env({"ICONIK_ID": "app", "BZ_SHARED_SECRET": "x" * 32}).shared_secret == "x" * 32


def test_the_app_refuses_to_start_with_a_short_secret(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "ICONIK_ID": "app", "BZ_SHARED_SECRET": "short-secret",
           "PLUGIN_STATE_DIR": str(tmp_path / "state")}
    result = subprocess.run([sys.executable, "-c", "import plugin; plugin.app"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "b2-iconik-plugin cannot start: BZ_SHARED_SECRET is 12 characters; it must be at least 32" in result.stderr
    assert "short-secret" not in result.stderr
    assert not (tmp_path / "state").exists()  # refused before anything is written


def test_the_app_refuses_to_start_without_its_settings_and_says_which(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", "import plugin; plugin.app"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "missing required setting(s): ICONIK_ID, BZ_SHARED_SECRET" in result.stderr


def test_every_environment_variable_the_code_reads_is_in_env_example_and_readme():
    names = set()
    for path in SOURCES:
        try:
            text = open(path).read()
        except FileNotFoundError:
            continue
        names |= set(re.findall(r"""(?:environ|env)(?:\.get\(|\[)\s*["']([A-Z][A-Z0-9_]+)["']""", text))
        names |= set(re.findall(r"""_number\(env, "([A-Z0-9_]+)\"""", text))
    ignored = {"GOOGLE_CLOUD_PROJECT", "GCP_PROJECT", "K_SERVICE", "PYTHONPATH", "PATH", "FUNCTION_TARGET"}
    example = (ROOT / ".env.example").read_text() + (
        (ROOT / ".env.yaml.example").read_text() if (ROOT / ".env.yaml.example").exists() else "")
    readme = (ROOT / "README.md").read_text()
    undocumented = sorted(n for n in names - ignored if n not in example or n not in readme)
    assert not undocumented, f"not in .env.example / README: {undocumented}"


@pytest.mark.parametrize("url", ["http://app.iconik.io", "http://10.0.0.5:8080", "http://iconik.example.com./API"])
def test_plain_http_to_another_host_is_refused_with_the_fix(url):
    with pytest.raises(ConfigError, match=r"plain http .*use https://"):
        Settings.from_env({"ICONIK_ID": "app", "BZ_SHARED_SECRET": GOOD_SECRET, "ICONIK_URL": url})


@pytest.mark.parametrize("url", ["http://127.0.0.1:8765", "http://localhost:9000", "http://[::1]:80",
                                 "https://iconik.example.com"])
def test_https_and_http_to_this_machine_are_accepted(url):
    assert Settings.from_env({"ICONIK_ID": "app", "BZ_SHARED_SECRET": GOOD_SECRET, "ICONIK_URL": url}).iconik_url == url


def test_the_custom_action_scripts_refuse_plain_http_to_another_host_too():
    from b2iconik.custom_actions import UsageError, load_settings

    with pytest.raises(UsageError, match="plain http"):
        load_settings({"ICONIK_ID": "app", "ICONIK_TOKEN": "t", "ICONIK_URL": "http://app.iconik.io"},
                      need_secret=False)


def test_more_formats_than_a_job_takes_are_refused():
    from b2iconik.workflows import MAX_FORMATS

    names = ",".join(f"F{n}" for n in range(MAX_FORMATS + 1))
    with pytest.raises(ConfigError, match=rf"FORMAT_NAMES: {MAX_FORMATS + 1} formats named; at most {MAX_FORMATS}"):
        Settings.from_env({"ICONIK_ID": "app", "BZ_SHARED_SECRET": GOOD_SECRET, "FORMAT_NAMES": names})
    allowed = ",".join(f"F{n}" for n in range(MAX_FORMATS))
    assert len(Settings.from_env({"ICONIK_ID": "app", "BZ_SHARED_SECRET": GOOD_SECRET,
                                  "FORMAT_NAMES": allowed}).formats) == MAX_FORMATS


def test_settings_without_storage_pins_carry_a_warning():
    base = {"ICONIK_ID": "app", "BZ_SHARED_SECRET": GOOD_SECRET}
    (warning,) = Settings.from_env(base).warnings()
    assert "PLUGIN_B2_STORAGE_ID and PLUGIN_LL_STORAGE_ID not set" in warning
    (warning,) = Settings.from_env({**base, "PLUGIN_B2_STORAGE_ID": "0d56db81-1b8e-4a68-9658-98ad9a94d841"}).warnings()
    assert warning.startswith("PLUGIN_LL_STORAGE_ID not set")
    assert Settings.from_env({**base, "PLUGIN_B2_STORAGE_ID": "0d56db81-1b8e-4a68-9658-98ad9a94d841",
                              "PLUGIN_LL_STORAGE_ID": "bf049e70-6749-4e44-a85b-7457236cdf4e"}).warnings() == []
