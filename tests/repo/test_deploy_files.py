"""The deployment files cannot drift apart from what the test suite runs.

No container engine runs here, so the Dockerfile is read, not built: it must
install requirements.txt (only: the server's, not requirements-cloud.txt, the Cloud
Function's), copy every module the app imports, and start the same command as
b2iconik/server/launcher.py (PluginServer), the systemd unit and the launchd property list.
The launchd wrapper script, the image's health check, gunicorn's request limits and
the Cloud Function's staging script are run for real.
"""

from __future__ import annotations

import ast
import json
import os
import plistlib
import re
import runpy
import shlex
import shutil
import subprocess
import sys
import threading
import tomllib
from http.server import BaseHTTPRequestHandler, HTTPServer
from importlib import metadata
from pathlib import Path, PurePosixPath

import pytest
import requests
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from b2iconik.server.launcher import PluginServer
from tests.helpers.harness import ROOT, free_port, plugin_settings, run_gunicorn, serve_plugin, settings_env

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
UNIT = ROOT / "b2-iconik-plugin.service"
PLIST = ROOT / "deploy" / "macos" / "com.backblaze.b2-iconik-plugin.plist"
APP_ENTRY_POINTS = ("plugin.py", "gunicorn.conf.py")
STATE_DIR = "/var/lib/b2-iconik-plugin"


# -- reading the Dockerfile ---------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, with continuation lines joined and comments dropped."""
    instructions, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole = (pending + line).strip()
        pending = ""
        keyword, _, rest = whole.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


@pytest.fixture(scope="module")
def docker():
    return dockerfile_instructions(DOCKERFILE.read_text())


def args_of(instructions, keyword) -> list[str]:
    return [rest for kind, rest in instructions if kind == keyword]


def exec_form(rest: str) -> list[str]:
    value = json.loads(rest)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), rest
    return value


def env_of(instructions) -> dict[str, str]:
    env = {}
    for rest in args_of(instructions, "ENV"):
        for item in shlex.split(rest):
            key, sep, value = item.partition("=")
            assert sep, f"use ENV KEY=value, not {rest!r}"
            env[key] = value
    return env


def workdir_of(instructions) -> PurePosixPath:
    workdirs = args_of(instructions, "WORKDIR")
    assert len(workdirs) == 1, "one WORKDIR, for the app"
    return PurePosixPath(workdirs[0])


def copies_of(instructions) -> list[tuple[list[str], str]]:
    copies = []
    for rest in args_of(instructions, "COPY") + args_of(instructions, "ADD"):
        parts = [p for p in shlex.split(rest) if not p.startswith("--")]
        copies.append((parts[:-1], parts[-1]))
    return copies


def image_files(instructions) -> dict[PurePosixPath, Path]:
    """Every file the image receives from the build context: image path -> source file."""
    workdir = workdir_of(instructions)
    files = {}
    for sources, dest in copies_of(instructions):
        target = workdir / dest if not dest.startswith("/") else PurePosixPath(dest)
        for source in sources:
            path = ROOT / source
            assert path.exists(), f"COPY {source}: no such file or directory in the build context"
            if path.is_dir():
                for file in sorted(path.rglob("*")):
                    relative = file.relative_to(ROOT).as_posix()
                    if file.is_file() and not dockerignored(relative):
                        files[target / file.relative_to(path).as_posix()] = file
            else:
                assert not dockerignored(source), f"COPY {source}, but .dockerignore leaves it out"
                into_dir = dest.endswith("/") or len(sources) > 1
                files[target / path.name if into_dir else target] = path
    return files


# -- .dockerignore, with Docker's rules -------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern:
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif c == "*":
            out, i = out + "[^/]*", i + 1
        elif c == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(c), i + 1
    return re.compile(out + r"\Z")


def dockerignore_rules() -> list[tuple[bool, re.Pattern]]:
    rules = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = os.path.normpath(line[1:].strip() if negate else line).lstrip("/")
        rules.append((negate, _pattern_regex(pattern)))
    return rules


def dockerignored(path: str) -> bool:
    """Whether Docker leaves `path` (relative, /-separated) out of the build context: the last
    pattern matching the path or one of its parent directories decides."""
    parts = PurePosixPath(path).parts
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    ignored = False
    for negate, regex in dockerignore_rules():
        if any(regex.match(candidate) for candidate in candidates):
            ignored = not negate
    return ignored


def test_the_dockerignore_matcher_follows_dockers_rules():
    assert _pattern_regex("*").match("plugin.py") and not _pattern_regex("*").match("a/b")
    assert _pattern_regex("**/__pycache__").match("__pycache__")
    assert _pattern_regex("**/__pycache__").match("b2iconik/emulator/__pycache__")
    assert _pattern_regex("**/*.pyc").match("b2iconik/x.pyc")


# -- the command, three ways ------------------------------------------------------------


def harness_command() -> list[str]:
    """The command the launcher (b2iconik/server/launcher.py) starts by default, for the tests,
    the demo and the benchmark, with `python -m gunicorn` read as `gunicorn`."""
    command = PluginServer({}).command
    assert command[:3] == [sys.executable, "-m", "gunicorn"], command
    return ["gunicorn", *command[3:]]


def systemd_command() -> tuple[list[str], str]:
    """ExecStart with the venv's path dropped from gunicorn, and the WorkingDirectory."""
    settings = {}
    for line in UNIT.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            settings.setdefault(key.strip(), []).append(value.strip())
    (exec_start,), (workdir,) = settings["ExecStart"], settings["WorkingDirectory"]
    argv = shlex.split(exec_start)
    assert argv[0] == f"{workdir}/.venv/bin/gunicorn", "the unit runs the checkout's venv"
    return ["gunicorn", *argv[1:]], workdir


def unit_environment() -> dict[str, str]:
    env = {}
    for line in UNIT.read_text().splitlines():
        if line.startswith("Environment="):
            key, _, value = line[len("Environment="):].partition("=")
            env[key] = value
    return env


@pytest.fixture(scope="module")
def plist():
    with PLIST.open("rb") as handle:
        return plistlib.load(handle)


def plist_script(plist) -> str:
    argv = plist["ProgramArguments"]
    assert argv[:2] == ["/bin/sh", "-c"] and len(argv) == 3, argv
    return argv[2]


def plist_command(plist) -> list[str]:
    """The command the launchd wrapper execs, with the venv's path dropped from gunicorn."""
    lines = [line.strip() for line in plist_script(plist).splitlines() if line.strip().startswith("exec ")]
    assert len(lines) == 1, "the wrapper ends by exec-ing gunicorn (so launchd's SIGTERM reaches it)"
    argv = shlex.split(lines[0])[1:]
    assert argv[0] == f"{plist['WorkingDirectory']}/.venv/bin/gunicorn", "the checkout's venv"
    return ["gunicorn", *argv[1:]]


def gunicorn_config() -> dict:
    return runpy.run_path(str(ROOT / "gunicorn.conf.py"))


def test_the_image_starts_the_command_the_tests_and_the_systemd_unit_run(docker, plist):
    cmd = exec_form(args_of(docker, "CMD")[-1])
    expected = ["gunicorn", "-c", "gunicorn.conf.py", "plugin:app"]
    assert harness_command() == expected
    assert systemd_command()[0] == expected
    assert cmd == expected
    assert plist_command(plist) == expected
    assert not args_of(docker, "ENTRYPOINT"), "no ENTRYPOINT: CMD is the whole command"


def test_the_image_runs_from_the_directory_holding_the_app(docker):
    files = image_files(docker)
    workdir = workdir_of(docker)
    for name in APP_ENTRY_POINTS:
        assert files.get(workdir / name) == ROOT / name, f"{name} is not copied into {workdir}"


# -- requirements ----------------------------------------------------------------------------


def test_the_image_installs_the_servers_locked_requirements_only(docker):
    runs = args_of(docker, "RUN")
    installs = [run for run in runs if "pip install" in run]
    assert len(installs) == 1, installs
    words = shlex.split(installs[0])
    assert words[words.index("-r") + 1] == "requirements.lock" and words.count("-r") == 1, installs[0]
    assert "--require-hashes" in words, "every package is checked against the lock's hashes"
    assert not [rest for _, rest in docker if "requirements-dev" in rest or "requirements-cloud" in rest]
    for left_out in ("requirements-dev.txt", "requirements-cloud.txt", "requirements-cloud.lock"):
        assert dockerignored(left_out), left_out
    # requirements.lock is in the image before the install runs.
    order = [(kind, rest) for kind, rest in docker if kind in ("COPY", "RUN")]
    copied_at = next(i for i, (kind, rest) in enumerate(order)
                     if kind == "COPY" and "requirements.lock" in shlex.split(rest))
    installed_at = next(i for i, (kind, rest) in enumerate(order) if kind == "RUN" and "pip install" in rest)
    assert copied_at < installed_at
    assert files_in_image(docker, "requirements.lock")


def files_in_image(docker, relative: str) -> bool:
    return ROOT / relative in set(image_files(docker).values())


def test_the_base_image_is_the_official_slim_python_pinned_by_digest(docker):
    (base,) = args_of(docker, "FROM")
    assert re.fullmatch(r"python:3\.\d+-slim@sha256:[0-9a-f]{64}", base), base
    assert "docker buildx imagetools inspect python:" in DOCKERFILE.read_text(), "how to refresh the digest"


# -- the lock files ----------------------------------------------------------------------------

LOCKS = {"requirements.txt": "requirements.lock", "requirements-cloud.txt": "requirements-cloud.lock"}


def lock_entries(file: str) -> dict[str, tuple[Requirement, list[str]]]:
    """name -> (its pinned requirement, its hashes), of a lock written by pip-compile."""
    entries, logical = {}, ""
    for raw in (ROOT / file).read_text().splitlines() + [""]:
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical, whole = "", (logical + line).strip()
        if not whole:
            continue
        assert not whole.startswith("-"), f"{file}: an option line ({whole[:60]!r}); the lock holds packages only"
        words = whole.split()
        hashes = [word.split("=", 1)[1] for word in words[1:] if word.startswith("--hash=")]
        assert len(hashes) == len(words) - 1, f"{file}: {whole[:80]!r}"
        requirement = Requirement(words[0])
        entries[_normalize(requirement.name)] = (requirement, hashes)
    return entries


@pytest.mark.parametrize("source, lock", sorted(LOCKS.items()))
def test_each_lock_pins_every_requirement_inside_its_range_with_hashes(source, lock):
    entries = lock_entries(lock)
    pins = {}
    for name, (requirement, hashes) in entries.items():
        (specifier,) = requirement.specifier
        assert specifier.operator == "==" and not requirement.url, f"{lock}: {requirement} is not one version"
        assert hashes and all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in hashes), f"{lock}: {name}"
        pins[name] = specifier.version
    for name, line in requirement_lines(source).items():
        wanted = Requirement(line)
        if wanted.marker and not wanted.marker.evaluate():
            continue
        assert name in pins, f"{source} asks for {name}, which {lock} does not hold: run scripts/lock"
        assert wanted.specifier.contains(pins[name], prereleases=True), \
            f"{lock} has {name}=={pins[name]}, outside {source}'s {wanted.specifier}: run scripts/lock"
    # Made by the documented command, with nothing from the machine it ran on in it.
    text = (ROOT / lock).read_text()
    assert "#    scripts/lock\n" in text and "--find-links" not in text and "file:" not in text


def python_versions() -> dict[str, str]:
    """Where each part names the Python it runs: "3.11"-style, one per place."""
    found = {}
    (base,) = args_of(dockerfile_instructions(DOCKERFILE.read_text()), "FROM")
    found["Dockerfile"] = re.match(r"python:(3\.\d+)-", base).group(1)
    (found["scripts/lock"],) = re.findall(r"^PYTHON_VERSION=(3\.\d+)$", (ROOT / "scripts" / "lock").read_text(), re.M)
    for lock in LOCKS.values():
        (found[lock],) = re.findall(r"autogenerated by pip-compile with Python (3\.\d+)", (ROOT / lock).read_text())
    for doc in DEPLOY_DOCS:
        runtimes = set(re.findall(r"--runtime=python3(\d+)", (ROOT / doc).read_text()))
        assert runtimes, f"{doc} deploys no Python runtime"
        (minor,) = runtimes
        found[doc] = f"3.{minor}"
    return found


DEPLOY_DOCS = ("docs/deploy-cloud-function.md",)


def test_the_image_the_function_and_the_locks_run_one_python():
    versions = python_versions()
    assert len(set(versions.values())) == 1, versions
    # CI (CI=true, .ci/run) runs the tests on that Python too.
    if os.environ.get("CI"):
        assert "%d.%d" % sys.version_info[:2] == versions["Dockerfile"], (sys.version_info, versions)


# -- everything the app imports is in the image ---------------------------------------------------


def _module_files(dotted: str) -> list[Path]:
    """The project files that importing `dotted` loads (packages' __init__ included)."""
    parts = dotted.split(".")
    found = []
    for n in range(1, len(parts) + 1):
        base = ROOT.joinpath(*parts[:n])
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                found.append(candidate)
    return found


def import_closure(entry_points=APP_ENTRY_POINTS) -> tuple[set[Path], set[str]]:
    """Project files reachable by imports from the entry points, and the top-level
    names of what they import from outside the project (stdlib excluded)."""
    local, external = set(), set()
    pending = [ROOT / name for name in entry_points]
    while pending:
        file = pending.pop()
        if file in local:
            continue
        local.add(file)
        for node in ast.walk(ast.parse(file.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    package = file.relative_to(ROOT).parent.parts
                    package = package[: len(package) - (node.level - 1)]
                    base = ".".join([*package, node.module] if node.module else package)
                else:
                    base = node.module
                names = [base] + [f"{base}.{alias.name}" for alias in node.names]
            for name in names:
                files = _module_files(name)
                if files:
                    pending.extend(files)
                elif name == (names[0]) and name.split(".")[0] not in sys.stdlib_module_names:
                    if not _module_files(name.split(".")[0]):
                        external.add(name.split(".")[0])
    return local, external


def test_the_image_holds_every_module_the_app_imports(docker):
    local, _ = import_closure()
    copied = set(image_files(docker).values())
    assert {ROOT / "plugin.py", ROOT / "iconik.py", ROOT / "b2iconik" / "server" / "web.py"} <= local
    missing = sorted(str(path.relative_to(ROOT)) for path in local - copied)
    assert not missing, f"the app imports files the image does not hold: {missing}"


def test_the_image_holds_the_tools_run_inside_the_container(docker):
    """`python -m b2iconik selftest` and the custom-action scripts, as README.md runs them."""
    tools = ("b2iconik/selftest/command.py", "create_custom_actions.py", "delete_custom_actions.py")
    local, external = import_closure(tools)
    copied = set(image_files(docker).values())
    missing = sorted(str(path.relative_to(ROOT)) for path in local - copied)
    assert not missing, f"the tools need files the image does not hold: {missing}"
    providers = metadata.packages_distributions()
    runtime = runtime_distributions()
    assert all({_normalize(d) for d in providers.get(module, [])} & runtime for module in external), external


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(line: str) -> str | None:
    line = line.split("#", 1)[0].strip()
    if not line or line.startswith("-"):
        return None
    return _normalize(re.split(r"[\s<>=!~;\[]", line, maxsplit=1)[0])


def runtime_distributions(file: str = "requirements.txt") -> set[str]:
    """The file's distributions and everything they require (extras left out)."""
    wanted = {name for line in (ROOT / file).read_text().splitlines()
              if (name := _requirement_name(line))}
    seen, pending = set(), list(wanted)
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for requirement in requires:
            if "extra ==" in requirement:
                continue
            if (dependency := _requirement_name(requirement)):
                pending.append(dependency)
    return seen


def test_requirements_txt_provides_every_third_party_import_of_the_app():
    _, external = import_closure()
    assert {"flask", "requests", "dotenv"} <= external
    providers = metadata.packages_distributions()
    runtime = runtime_distributions()
    unprovided = {module: providers.get(module) for module in sorted(external)
                  if not {_normalize(d) for d in providers.get(module, [])} & runtime}
    assert not unprovided, f"imported by the app but not installed from requirements.txt: {unprovided}"
    assert "gunicorn" in runtime, "the image's CMD runs gunicorn: requirements.txt must install it"


SERVER_ONLY = {"prometheus-client"}
"""The metrics are served by gunicorn's master; the function has none (it logs its audit records)."""
CLOUD_ONLY = {"functions-framework", "google-cloud-tasks", "google-cloud-secret-manager", "google-auth",
              "google-api-core", "grpcio", "protobuf"}


def requirement_lines(file: str) -> dict[str, str]:
    """name -> the whole requirement line, of one requirements file (no -r lines)."""
    lines = {}
    for line in (ROOT / file).read_text().splitlines():
        if (name := _requirement_name(line)):
            lines[name] = line.split("#", 1)[0].strip()
    return lines


def test_the_server_does_not_install_the_cloud_functions_packages():
    local, external = import_closure(APP_ENTRY_POINTS + ("b2iconik/selftest/command.py", "create_custom_actions.py",
                                                        "delete_custom_actions.py"))
    assert "google" not in external and not [p for p in local if "cloud" in p.parts]
    assert not CLOUD_ONLY & runtime_distributions()


def test_requirements_cloud_txt_provides_every_third_party_import_of_the_function():
    _, external = import_closure(("main.py",))
    assert {"flask", "google", "google_crc32c", "requests", "dotenv"} <= external
    providers = metadata.packages_distributions()
    cloud = runtime_distributions("requirements-cloud.txt")
    unprovided = {module: providers.get(module) for module in sorted(external)
                  if not {_normalize(d) for d in providers.get(module, [])} & cloud}
    assert not unprovided, f"imported by the function but not installed from requirements-cloud.txt: {unprovided}"
    assert CLOUD_ONLY <= cloud
    # Deployed as the function's only requirements.txt: no -r lines, and no drift from the server's.
    assert not [line for line in (ROOT / "requirements-cloud.txt").read_text().splitlines()
                if line.strip().startswith("-")]
    server, function = requirement_lines("requirements.txt"), requirement_lines("requirements-cloud.txt")
    server = {name: line for name, line in server.items() if name not in SERVER_ONLY}
    assert {name: function.get(name) for name in server} == server
    assert not SERVER_ONLY & set(function)


@pytest.mark.parametrize("file", ["requirements.txt", "requirements-cloud.txt"])
def test_floors_are_past_known_advisories(file):
    lines = requirement_lines(file)
    floors = [("requests", "2.32.3", "2.32.4"), ("gunicorn", "22.0.0", "23.0.0"), ("werkzeug", "3.1.5", "3.1.6"),
              ("flask", "3.1.0", "3.1.1"), ("urllib3", "2.6.3", "2.7.0"), ("jinja2", "3.1.5", "3.1.6")]
    if file == "requirements-cloud.txt":
        floors.append(("protobuf", "6.33.4", "6.33.5"))
    for name, too_old, fixed in floors:
        specifier = Requirement(lines[name]).specifier
        assert not specifier.contains(too_old) and specifier.contains(fixed), (file, lines[name])
        assert specifier.contains(metadata.version(name)), f"the test venv's {name} is outside {file}"


def test_the_build_tools_floors_are_past_known_advisories():
    """Not checked against the test venv: a venv made before these floors may hold older ones."""
    lines = requirement_lines("requirements-dev.txt")
    for name, too_old, fixed in [("setuptools", "78.1.0", "78.1.1"), ("wheel", "0.46.1", "0.46.2")]:
        specifier = Requirement(lines[name]).specifier
        assert not specifier.contains(too_old) and specifier.contains(fixed), lines[name]
    (build,) = re.findall(r'requires = \["setuptools([^"]*)"\]', (ROOT / "pyproject.toml").read_text())
    assert not SpecifierSet(build).contains("78.1.0")


def test_the_test_venv_reinstalls_when_any_requirements_file_changes():
    """scripts/_venv.sh's stamp hashes every file pip reads through requirements-dev.txt."""
    read, pending = [], ["requirements-dev.txt"]
    while pending:
        name = pending.pop()
        read.append(name)
        for line in (ROOT / name).read_text().splitlines():
            if line.strip().startswith("-r "):
                pending.append(line.strip()[3:].strip())
    (hashed,) = re.findall(r'wanted="\$\(cat ([^|]+)\|', (ROOT / "scripts" / "_venv.sh").read_text())
    assert sorted(hashed.split()) == sorted(read) == ["requirements-cloud.txt", "requirements-dev.txt",
                                                      "requirements.txt"]


def test_stage_function_holds_what_the_function_imports_and_its_requirements(tmp_path):
    staged = tmp_path / "function"
    done = subprocess.run(["bash", str(ROOT / "scripts" / "stage-function"), str(staged)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(staged)
    assert (staged / "requirements.txt").read_text() == (ROOT / "requirements-cloud.lock").read_text()
    local, _ = import_closure(("main.py",))
    missing = [str(p.relative_to(ROOT)) for p in local if not (staged / p.relative_to(ROOT)).is_file()]
    assert not missing, missing
    names = {p.name for p in staged.rglob("*")}
    assert not names & {"tests", ".env", ".venv", "__pycache__", ".git", "requirements-dev.txt"}, names
    # The staged copy loads on its own (no PYTHONPATH to the checkout).
    env = {"PATH": os.environ["PATH"], "ICONIK_ID": "app", "BZ_SHARED_SECRET": "s" * 32, "TASKS_MODE": "null",
           "LOG_LEVEL": "WARNING"}
    loaded = subprocess.run([sys.executable, "-c", "import main, b2iconik, b2iconik.version as v; "
                             "print(b2iconik.__file__, v.version())"], cwd=staged,
                            env=env, capture_output=True, text=True, timeout=60)
    assert loaded.returncode == 0, loaded.stderr
    where, version = loaded.stdout.split()
    assert where.startswith(str(staged))
    assert version == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    again = subprocess.run(["bash", str(ROOT / "scripts" / "stage-function"), str(staged)], capture_output=True,
                           text=True, timeout=60)
    assert again.returncode != 0 and "not empty" in again.stderr


# -- gunicorn's limits and the published port ---------------------------------------------------


def test_gunicorn_refuses_oversized_requests_and_bounds_idle_connections(emulator, tmp_path):
    config = gunicorn_config()
    assert (config["limit_request_line"], config["limit_request_fields"]) == (4094, 50)
    assert config["limit_request_field_size"] == 8190
    assert config["keepalive"] <= 5 and config["worker_connections"] * config["workers"] <= 1000
    with run_gunicorn(settings_env(plugin_settings(emulator, tmp_path / "state")), workers=1) as (url, _):
        assert requests.get(url + "/healthz", timeout=5).status_code == 200
        long_line = requests.get(url + "/healthz?pad=" + "x" * 5000, timeout=5)
        many = requests.get(url + "/healthz", headers={f"x-h{n}": "1" for n in range(60)}, timeout=5)
        large = requests.get(url + "/healthz", headers={"x-big": "y" * 9000}, timeout=5)
        for answer in (long_line, many, large):
            assert answer.status_code in (400, 414, 431), (answer.status_code, answer.text[:200])
        assert requests.get(url + "/healthz", timeout=5).status_code == 200


def test_gunicorn_listens_on_loopback_unless_host_says_otherwise(monkeypatch):
    monkeypatch.delenv("HOST", raising=False)
    monkeypatch.delenv("PORT", raising=False)
    assert gunicorn_config()["bind"] == "127.0.0.1:8000"
    monkeypatch.setenv("HOST", "0.0.0.0")
    assert gunicorn_config()["bind"] == "0.0.0.0:8000"


def _slow_sockets(port: int, count: int) -> list:
    """`count` connections that have each sent the first byte of a request, and no more."""
    import socket

    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(b"G")
        sockets.append(sock)
    return sockets


def test_slow_clients_hold_no_thread_and_are_dropped_after_the_read_timeout(emulator, tmp_path):
    """40 clients sending their headers a byte at a time, against one worker of 4 threads."""
    head = b"ET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"y" * 40
    env = {**settings_env(plugin_settings(emulator, tmp_path / "state")), "GUNICORN_READ_TIMEOUT": "2"}
    with run_gunicorn(env, workers=1) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        sockets = _slow_sockets(port, 40)
        try:
            answers = []
            for step in range(6):  # bounded: 6 bytes each, 0.25 s apart, within the read timeout
                for sock in sockets:
                    sock.sendall(head[step:step + 1])
                if step == 2:
                    answers.append(requests.get(url + "/healthz", timeout=3).status_code)
                threading.Event().wait(0.25)
            answers.append(requests.get(url + "/healthz", timeout=3).status_code)
            assert answers == [200, 200]
            # Past the read timeout every slow client has been dropped: each read ends (b"" or reset).
            for sock in sockets:
                sock.settimeout(10)
                try:
                    assert sock.recv(1024) == b""
                except ConnectionResetError:
                    pass
        finally:
            for sock in sockets:
                sock.close()
        assert requests.get(url + "/healthz", timeout=3).status_code == 200


def test_a_body_that_does_not_arrive_in_time_is_answered_408(emulator, tmp_path):
    import socket

    env = {**settings_env(plugin_settings(emulator, tmp_path / "state")), "GUNICORN_READ_TIMEOUT": "1"}
    with run_gunicorn(env, workers=1) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"POST /add?b2_storage_id=x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                         b"\r\nContent-Length: 500\r\nx-bz-secret: " + env["BZ_SHARED_SECRET"].encode()
                         + b"\r\n\r\n{\"context\":")
            answer = b""
            while b"did not arrive" not in answer:  # the head and the body may come in two reads
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"did not arrive" in answer
        assert requests.get(url + "/healthz", timeout=3).status_code == 200


def _gunicorn_refusing(env: dict, tmp_path) -> subprocess.CompletedProcess:
    full = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "HOST": "127.0.0.1", "PORT": str(free_port()),
            "PLUGIN_STATE_DIR": str(tmp_path / "state"), "PLUGIN_METRICS_PORT": "0", **env}
    return subprocess.run([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "plugin:app"], cwd=ROOT,
                          env=full, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("env, message", [
    ({"ICONIK_ID": "app", "BZ_SHARED_SECRET": "8charsxx"}, "BZ_SHARED_SECRET is 8 characters"),
    ({"ICONIK_ID": "app", "BZ_SHARED_SECRET": "s" * 32, "ICONIK_URL": "http://iconik.example.com"},
     "plain http to iconik.example.com"),
    ({"ICONIK_ID": "app", "BZ_SHARED_SECRET": "s" * 32, "GUNICORN_READ_TIMEOUT": "soon"}, "GUNICORN_READ_TIMEOUT"),
])
def test_a_refusal_under_gunicorn_ends_the_master_with_its_message_and_no_worker_boots(tmp_path, env, message):
    done = _gunicorn_refusing(env, tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 78, output[-2000:]
    assert output.count("b2-iconik-plugin cannot start:") == 1 and message in output, output[-2000:]
    assert "Booting worker" not in output and "Traceback" not in output
    assert "8charsxx" not in output
    assert not (tmp_path / "state").exists()


def test_the_refusal_exit_status_can_be_set_for_launchd(tmp_path):
    done = _gunicorn_refusing({"ICONIK_ID": "app", "BZ_SHARED_SECRET": "short", "PLUGIN_REFUSAL_EXIT_STATUS": "0"},
                              tmp_path)
    assert done.returncode == 0 and "cannot start: BZ_SHARED_SECRET is 5 characters" in done.stderr


def test_the_unit_and_the_plist_leave_a_refused_service_stopped(plist):
    settings = unit_settings(UNIT)
    assert settings["Restart"] == ["on-failure"] and settings["RestartPreventExitStatus"] == ["78"]
    assert int(settings["StartLimitBurst"][0]) <= 10 and int(settings["StartLimitIntervalSec"][0]) >= 60
    assert plist["KeepAlive"] == {"SuccessfulExit": False}
    assert plist["EnvironmentVariables"]["PLUGIN_REFUSAL_EXIT_STATUS"] == "0"


def test_the_published_port_examples_listen_on_localhost_only():
    readme = (ROOT / "README.md").read_text()
    for text in (DOCKERFILE.read_text(), readme):
        # Commands and compose files; a `-p ...` in backticks is prose (the warning against it).
        published = re.findall(r"(?<!`)-p\s+(\S+):8000\b", text) + re.findall(r'ports:\s*\["([^"]+)"\]', text)
        assert published and all(p.startswith("127.0.0.1:") or p == "127.0.0.1" for p in published), published


# -- .dockerignore ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [
    ".venv", ".venv/bin/python", "tests", "tests/scenarios/test_selftest.py", "state", "state/jobs.sqlite3",
    ".env", ".env.yaml", ".git/config", "b2iconik/__pycache__/web.cpython-312.pyc", "b2iconik/.env",
    "bench-results/run.json", "requirements-dev.txt", "requirements-cloud.lock", "scripts/test",
])
def test_dockerignore_leaves_local_files_out_of_the_build_context(path):
    assert dockerignored(path), path


def test_everything_copied_is_in_the_build_context(docker):
    for sources, _ in copies_of(docker):
        for source in sources:
            assert (ROOT / source).exists(), source
            assert not dockerignored(source.rstrip("/")), f".dockerignore leaves out {source}"
    files = image_files(docker)
    assert not [p for p in files if "__pycache__" in p.parts or p.suffix == ".pyc"]


# -- user, state, configuration, health, stopping ------------------------------------------------


def test_the_image_runs_as_a_user_who_is_not_root(docker):
    users = args_of(docker, "USER")
    assert users and users[-1] not in ("root", "0", "0:0")
    last_user = max(i for i, (kind, _) in enumerate(docker) if kind == "USER")
    cmd_at = max(i for i, (kind, _) in enumerate(docker) if kind == "CMD")
    assert last_user < cmd_at
    assert any("useradd" in run and users[-1].split(":")[0] in run for run in args_of(docker, "RUN"))


def test_the_state_directory_is_a_volume_in_the_same_place_as_under_systemd(docker):
    env = env_of(docker)
    assert env["PLUGIN_STATE_DIR"] == STATE_DIR
    assert unit_environment()["PLUGIN_STATE_DIR"] == STATE_DIR
    volumes = [v for rest in args_of(docker, "VOLUME")
               for v in (exec_form(rest) if rest.startswith("[") else rest.split())]
    assert volumes == [STATE_DIR]
    user = args_of(docker, "USER")[-1].split(":")[0]
    assert any(f"chown {user}" in run and STATE_DIR in run for run in args_of(docker, "RUN")), \
        "the state directory belongs to the service user"
    # VOLUME comes after the directory is made and owned, or the ownership is lost.
    volume_at = next(i for i, (kind, _) in enumerate(docker) if kind == "VOLUME")
    chown_at = max(i for i, (kind, rest) in enumerate(docker) if kind == "RUN" and STATE_DIR in rest)
    assert chown_at < volume_at


def test_configuration_comes_from_the_environment(docker):
    env = env_of(docker)
    for secret in ("ICONIK_ID", "ICONIK_TOKEN", "BZ_SHARED_SECRET"):
        assert secret not in env, f"{secret} must not be baked into the image"
    assert dockerignored(".env")
    assert env.get("HOST") == "0.0.0.0"
    assert args_of(docker, "EXPOSE") == [env.get("PORT", "8000")]
    assert gunicorn_config()["bind"].endswith(":8000") or "PORT" in os.environ


def test_the_settings_example_leaves_the_address_to_each_deployment():
    """The container's env file is made from .env.example: a HOST line there would override the image's
    0.0.0.0 and leave the published port unanswered; elsewhere gunicorn's default is loopback."""
    lines = (ROOT / ".env.example").read_text().splitlines()
    assert not [line for line in lines if line.startswith("HOST=")]
    assert "# HOST=127.0.0.1" in lines


def test_the_healthcheck_asks_healthz_with_python(docker):
    (rest,) = args_of(docker, "HEALTHCHECK")
    options, _, command = rest.partition("CMD ")
    argv = exec_form(command)
    assert argv[:2] == ["python", "-c"] and "/healthz" in argv[2] and "urllib" in argv[2]
    assert "curl" not in rest and "wget" not in rest


def test_the_healthcheck_command_passes_on_a_healthy_plugin_and_fails_otherwise(docker, emulator, tmp_path):
    (rest,) = args_of(docker, "HEALTHCHECK")
    code = exec_form(rest.partition("CMD ")[2])[2]

    def healthcheck(port) -> int:
        env = {**os.environ, "PORT": str(port)}
        return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=30).returncode

    with serve_plugin(plugin_settings(emulator, tmp_path / "state"), run_jobs=False) as plugin:
        assert healthcheck(int(plugin.url.rsplit(":", 1)[1])) == 0
    assert healthcheck(free_port()) != 0  # nothing listening

    class Unhealthy(BaseHTTPRequestHandler):  # what /healthz answers when the store cannot write
        def do_GET(self):
            self.send_response(503)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Unhealthy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert healthcheck(server.server_port) != 0
    finally:
        server.shutdown()
        server.server_close()


def test_stopping_leaves_time_for_jobs_to_go_back_to_the_store(docker, plist):
    graceful = gunicorn_config()["graceful_timeout"]
    unit = UNIT.read_text()
    assert int(re.search(r"^TimeoutStopSec=(\d+)", unit, re.M).group(1)) > graceful
    assert plist["ExitTimeOut"] > graceful
    assert args_of(docker, "STOPSIGNAL") in ([], ["SIGTERM"])
    assert "-t 40" in DOCKERFILE.read_text() or "--stop-timeout 40" in DOCKERFILE.read_text()
    assert 40 > graceful


# -- macOS launchd ---------------------------------------------------------------------------


def test_the_launchd_plist_runs_the_plugin_as_a_kept_alive_daemon(plist):
    assert plist["Label"] == PLIST.stem
    assert plist["RunAtLoad"] is True
    assert plist["KeepAlive"] == {"SuccessfulExit": False}
    assert plist["WorkingDirectory"].startswith("/")
    for key in ("StandardOutPath", "StandardErrorPath"):
        assert plist[key].startswith("/Library/Logs/b2-iconik-plugin/")
    assert plist["StandardOutPath"] != plist["StandardErrorPath"]
    assert plist.get("UserName") not in (None, "root")
    state = plist["EnvironmentVariables"]["PLUGIN_STATE_DIR"]
    assert state.startswith("/") and not state.startswith(plist["WorkingDirectory"] + "/")
    assert plist.get("Umask") == 0o077


def _wrapper_with(plist, env_file: Path, program: str) -> str:
    """The wrapper script with the env file and gunicorn swapped for test doubles."""
    script = plist_script(plist)
    (env_path,) = re.findall(r"done < (\S+)", script)
    exec_line = next(line for line in script.splitlines() if line.strip().startswith("exec "))
    return script.replace(env_path, shlex.quote(str(env_file))).replace(exec_line, f"exec {program}")


SHELLS = [shell for shell in ("/bin/sh", "bash", "dash") if shutil.which(shell)]


@pytest.mark.parametrize("shell", SHELLS)
def test_the_launchd_wrapper_exports_the_environment_file_literally(plist, tmp_path, shell):
    env_file = tmp_path / "env"
    env_file.write_text(
        "# the plugin's settings\n"
        "\n"
        "ICONIK_ID=abc-123\n"
        "BZ_SHARED_SECRET=s3cr$t;with&odd'chars\"and spaces\n"
        "ICONIK_URL=https://app.iconik.io\n"
        "FORMAT_NAMES=ORIGINAL,PPRO_PROXY")  # no newline at the end
    printer = f"{shlex.quote(sys.executable)} -c 'import json, os; print(json.dumps(dict(os.environ)))'"
    script = _wrapper_with(plist, env_file, printer)
    done = subprocess.run([shell, "-c", script], capture_output=True, text=True, timeout=30,
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    assert done.returncode == 0, done.stderr
    exported = json.loads(done.stdout)
    assert exported["ICONIK_ID"] == "abc-123"
    assert exported["BZ_SHARED_SECRET"] == "s3cr$t;with&odd'chars\"and spaces"
    assert exported["ICONIK_URL"] == "https://app.iconik.io"
    assert exported["FORMAT_NAMES"] == "ORIGINAL,PPRO_PROXY"


def test_the_launchd_wrapper_stops_when_the_environment_file_is_missing(plist, tmp_path):
    script = _wrapper_with(plist, tmp_path / "missing", "true")
    done = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, timeout=30)
    assert done.returncode != 0


# -- the scheduled cleanup: systemd timer and launchd calendar job -------------------------

CLEANUP_UNIT = ROOT / "deploy" / "systemd" / "b2-iconik-cleanup.service"
CLEANUP_TIMER = ROOT / "deploy" / "systemd" / "b2-iconik-cleanup.timer"
CLEANUP_PLIST = ROOT / "deploy" / "macos" / "com.backblaze.b2-iconik-cleanup.plist"
CLEANUP_COMMAND = ["-m", "b2iconik", "cleanup", "--apply", "--no-progress"]


def unit_settings(path: Path) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith(("#", "[")):
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_the_cleanup_service_runs_the_cleanup_as_the_plugin_with_its_settings_and_store():
    cleanup, plugin = unit_settings(CLEANUP_UNIT), unit_settings(UNIT)
    for key in ("User", "Group", "WorkingDirectory", "EnvironmentFile", "Environment", "StateDirectory",
                "StateDirectoryMode", "UMask", "NoNewPrivileges", "ProtectSystem", "RestrictAddressFamilies"):
        assert cleanup[key] == plugin[key], key
    assert cleanup["Type"] == ["oneshot"] and "Restart" not in cleanup
    (exec_start,) = cleanup["ExecStart"]
    argv = shlex.split(exec_start)
    assert argv[0] == f"{cleanup['WorkingDirectory'][0]}/.venv/bin/python" and argv[1:] == CLEANUP_COMMAND
    from b2iconik.cleanup.command import build_parser

    assert build_parser().parse_args(argv[4:]).apply is True


def test_the_timer_starts_the_cleanup_service_nightly_and_catches_up():
    timer = unit_settings(CLEANUP_TIMER)
    assert timer["Unit"] == [CLEANUP_UNIT.name] and timer["Persistent"] == ["true"]
    assert timer["WantedBy"] == ["timers.target"]
    (calendar,) = timer["OnCalendar"]
    if shutil.which("systemd-analyze"):
        done = subprocess.run(["systemd-analyze", "calendar", calendar], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0 and "Next elapse" in done.stdout, done.stderr


def test_the_launchd_calendar_job_runs_the_cleanup_like_the_daemon_runs_the_plugin(plist):
    with CLEANUP_PLIST.open("rb") as handle:
        job = plistlib.load(handle)
    assert job["Label"] == CLEANUP_PLIST.stem
    for key in ("WorkingDirectory", "UserName", "GroupName", "Umask"):
        assert job[key] == plist[key], key
    # PLUGIN_REFUSAL_EXIT_STATUS is gunicorn's master's; a refused cleanup exits 2 and is not kept alive.
    assert job["EnvironmentVariables"] == {k: v for k, v in plist["EnvironmentVariables"].items()
                                           if k != "PLUGIN_REFUSAL_EXIT_STATUS"}
    assert job["StartCalendarInterval"] == {"Hour": 2, "Minute": 30}
    assert job.get("RunAtLoad") is False and "KeepAlive" not in job
    assert job["StandardOutPath"].startswith("/Library/Logs/b2-iconik-plugin/")
    script, daemon = plist_script(job), plist_script(plist)
    assert script.rsplit("\n", 1)[0] == daemon.rsplit("\n", 1)[0], "the same reading of the settings file"
    exec_line = script.rsplit("\n", 1)[1]
    assert shlex.split(exec_line) == ["exec", f"{job['WorkingDirectory']}/.venv/bin/python", *CLEANUP_COMMAND]


def test_the_launchd_cleanup_wrapper_passes_the_settings_to_the_cleanup(plist, tmp_path):
    with CLEANUP_PLIST.open("rb") as handle:
        job = plistlib.load(handle)
    env_file = tmp_path / "env"
    env_file.write_text("CLEANUP_OLDER_THAN=30d\nICONIK_TOKEN=tok en$\n")
    printer = f"{shlex.quote(sys.executable)} -c 'import json, os; print(json.dumps(dict(os.environ)))'"
    done = subprocess.run(["/bin/sh", "-c", _wrapper_with(job, env_file, printer)], capture_output=True, text=True,
                          timeout=30, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    assert done.returncode == 0, done.stderr
    exported = json.loads(done.stdout)
    assert exported["CLEANUP_OLDER_THAN"] == "30d" and exported["ICONIK_TOKEN"] == "tok en$"


# -- the package: pip install . -------------------------------------------------------------------

TOP_LEVEL_MODULES = ("plugin", "main", "iconik", "create_custom_actions", "delete_custom_actions")
PACKAGE_FILES = ("pyproject.toml", "requirements.txt", "requirements-cloud.txt",
                 *(f"{module}.py" for module in TOP_LEVEL_MODULES))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel `pip install .` installs, built offline from a copy of the checkout's package files."""
    source = tmp_path_factory.mktemp("source")
    for name in PACKAGE_FILES:
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "b2iconik", source / "b2iconik", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "--quiet", "--disable-pip-version-check", "--wheel-dir", str(out), str(source)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    (built,) = out.glob("*.whl")
    return built


def test_the_wheel_holds_the_package_and_the_top_level_modules(wheel):
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    package = {path.relative_to(ROOT).as_posix() for path in (ROOT / "b2iconik").rglob("*.py")
               if "__pycache__" not in path.parts}
    assert "b2iconik/workflows/engine.py" in package
    missing = sorted((package | {f"{module}.py" for module in TOP_LEVEL_MODULES}) - names)
    assert not missing, f"pip install . leaves out: {missing}"
    entry_points = next(name for name in names if name.endswith(".dist-info/entry_points.txt"))
    assert "b2iconik = b2iconik.__main__:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def _requirements_of(lines) -> set[tuple[str, str, str]]:
    """(name, specifiers, marker) of each requirement, comparable however it was written."""
    found = set()
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            requirement = Requirement(line)
            found.add((_normalize(requirement.name), str(requirement.specifier), str(requirement.marker or "")))
    return found


def test_the_wheel_requires_what_the_requirements_files_list(wheel):
    """pyproject.toml reads its dependencies from requirements.txt and the `cloud` extra's from
    requirements-cloud.txt: the built metadata says exactly that."""
    import zipfile

    archive = zipfile.ZipFile(wheel)
    metadata_file = next(name for name in archive.namelist() if name.endswith(".dist-info/METADATA"))
    requires = [line.split(":", 1)[1] for line in archive.read(metadata_file).decode().splitlines()
                if line.startswith("Requires-Dist:")]
    server = _requirements_of((ROOT / "requirements.txt").read_text().splitlines())
    cloud = {(name, specifier, 'extra == "cloud"')
             for name, specifier, _ in _requirements_of((ROOT / "requirements-cloud.txt").read_text().splitlines())}
    assert server and cloud
    assert _requirements_of(requires) == server | cloud


def test_pip_install_gives_a_working_b2iconik_command(wheel, tmp_path):
    import sysconfig
    import venv

    target = tmp_path / "venv"
    venv.create(target, with_pip=False)
    python = target / "bin" / "python"
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                           "--quiet", "--disable-pip-version-check", str(wheel)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    # The dependencies come from the test venv (the install took none); the code only from the wheel.
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "test-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}

    def run(*argv):
        return subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)

    command = target / "bin" / "b2iconik"
    listed = run(str(command), "--help")
    assert listed.returncode == 0, listed.stderr
    for name in ("selftest", "create-actions", "report", "cleanup", "jobs", "demo", "emulator", "bench"):
        assert f"\n  {name} " in listed.stdout
    assert run(str(command), "nope").returncode == 2
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert run(str(command), "--version").stdout == f"b2-iconik-plugin {version}\n"  # from the wheel's metadata
    selftest = run(str(command), "selftest", "--help")
    assert selftest.returncode == 0 and "--endpoint" in selftest.stdout, selftest.stderr
    for checkout_only in ("bench", "demo"):
        refused = run(str(command), checkout_only)
        assert refused.returncode == 2 and "checkout" in refused.stderr, refused.stderr
    where = run(str(python), "-c", "import importlib.util as u; import b2iconik; print(b2iconik.__file__); "
                                   f"print(all(u.find_spec(m).origin.startswith({str(site)!r}) "
                                   f"for m in {TOP_LEVEL_MODULES!r}))")
    assert where.stdout.split() == [str(site / "b2iconik" / "__init__.py"), "True"], where.stderr
