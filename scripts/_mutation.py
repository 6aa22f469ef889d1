"""Mutation testing of one module at a time: scripts/mutation runs this.

Each mutant is one small change to the module's syntax tree (see `sites`): a
comparison or `and`/`or` flipped, an operand of `and`/`or` dropped, a `not`
dropped, a constant changed, a `return`, `raise`, `continue`, `break` or call
statement deleted. A mutant is run against the tests that reach the lines it
changes, and nothing else: which tests reach which line comes from one run of
the suite under coverage.py with a dynamic context per test (the "map", kept in
.mutation/ until a Python file of the checkout changes). A test that fails, an
error, or a run over its time limit kills the mutant; a mutant that every
selected test passes survives, and is listed.

The mutant never touches the file: each one runs in a forked process whose
import system hands out the mutated code for the module (so runs can go side by
side, and no stale bytecode can stand in for a mutant). Tests that run the
plugin in another process (gunicorn, the demo) see the original module, and the
map, which only sees this process, never selects them.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import importlib.abc
import importlib.util
import json
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".mutation"
MAP_OPTIONS = ["-p", "no:cacheprovider", "-q", "-k", "not gunicorn"]
MAP_TESTS = {
    "b2iconik/edge/callback.py": [
        "tests/unit/edge/test_callback_mutants.py", "tests/scenarios/test_plugin_edge.py",
        "tests/unit/edge/test_edge_properties.py", "tests/unit/edge/test_limits.py"],
    "b2iconik/workflows/assessment.py": [
        "tests/unit/workflows/test_assessment_mutants.py", "tests/scenarios/test_plugin_remove.py",
        "tests/unit/report/test_report.py", "tests/unit/cleanup/test_cleanup.py"],
    "b2iconik/workflows/remove.py": [
        "tests/unit/workflows/test_remove_mutants.py", "tests/unit/workflows/test_storage_roles.py",
        "tests/scenarios/test_plugin_remove.py", "tests/scenarios/test_plugin_durability.py",
        "tests/unit/cleanup/test_cleanup.py"],
    "b2iconik/workflows/verify.py": [
        "tests/unit/workflows/test_verify.py", "tests/unit/workflows/test_verify_mutants.py",
        "tests/unit/workflows/test_assessment_mutants.py", "tests/unit/workflows/test_remove_mutants.py",
        "tests/scenarios/test_plugin_remove.py", "tests/unit/report/test_report.py"],
}
"""The test files whose tests the mapping run maps, per module (the machine is small: not the whole
suite); a module not listed maps the whole suite less what runs the plugin in other processes, whose
lines the map cannot see. Tests whose name says gunicorn are left out for that reason."""
WHOLE_SUITE = ["tests", "--ignore=tests/scenarios/test_demo.py", "--ignore=tests/scenarios/test_soak.py"]
LOGGERS = {"log", "logger", "logging"}
NEGATED = {ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.Gt: ast.LtE,
           ast.LtE: ast.Gt, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is}


# -- the mutants ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Mutant:
    number: int
    node: int
    """The node's index in ast.walk order of a fresh parse."""
    kind: str
    arg: int
    line: int
    first_line: int
    """The first line of the statement it is in (where coverage.py counts it)."""
    end_line: int
    function: str
    at_import: bool
    """Runs when the module is imported (module level, class bodies, decorators, defaults)."""
    before: str
    after: str

    def label(self) -> str:
        return f"#{self.number} line {self.line} ({self.function}): {self.before}  ->  {self.after}"


def _short(node: ast.AST) -> str:
    text = " ".join(ast.unparse(node).split())
    return text if len(text) <= 90 else text[:87] + "..."


def _is_log_call(node: ast.AST) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name) and node.func.value.id in LOGGERS)


def _skipped_nodes(tree: ast.AST) -> set[int]:
    """ids of nodes not mutated: docstrings, annotations, imports, log calls, the text of f-strings."""
    skipped: set[int] = set()

    def skip(node):
        skipped.update(id(n) for n in ast.walk(node))

    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            skip(node)
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            skip(node)  # docstrings, and the strings under attributes that document them
        elif isinstance(node, (ast.arg, ast.AnnAssign)) and node.annotation is not None:
            skip(node.annotation)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None:
            skip(node.returns)
        elif _is_log_call(node):
            skip(node)
        elif isinstance(node, ast.Expr) and _is_log_call(node.value):
            skip(node)
        elif isinstance(node, ast.JoinedStr):
            skipped.update(id(v) for v in node.values if isinstance(v, ast.Constant))
        elif isinstance(node, ast.FormattedValue) and node.format_spec is not None:
            skip(node.format_spec)
    return skipped


def _changes(node: ast.AST) -> list[tuple[str, int]]:
    """The mutations of one node: (kind, argument)."""
    if isinstance(node, ast.Compare):
        return [("compare", i) for i, op in enumerate(node.ops) if type(op) in NEGATED]
    if isinstance(node, ast.BoolOp):
        return [("boolop", 0)] + [("drop", i) for i in range(len(node.values))]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return [("not", 0)]
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
        return [("binop", 0)]
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, (bool, int, float, str)) and not isinstance(value, bytes):
            return [("constant", 0)]
        return []
    if isinstance(node, (ast.Return, ast.Raise, ast.Continue, ast.Break)):
        return [("delete", 0)]
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        return [("delete", 0)]
    return []


def _mutated_constant(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    return "" if value else "XX"  # not "XX" + value: a test that looks for the text in a message must see it go


def _parents(tree: ast.AST) -> dict[int, ast.AST]:
    return {id(child): parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}


def _replace(parent: ast.AST, old: ast.AST, new: ast.AST) -> None:
    for name, value in ast.iter_fields(parent):
        if value is old:
            setattr(parent, name, new)
            return
        if isinstance(value, list):
            for i, item in enumerate(value):
                if item is old:
                    value[i] = new
                    return
    raise LookupError("node not found in its parent")


def _apply(tree: ast.AST, node: ast.AST, kind: str, arg: int) -> ast.AST:
    """Mutate `node` of `tree` in place; returns the node now standing in its place."""
    parent = _parents(tree).get(id(node))
    if kind == "compare":
        node.ops[arg] = NEGATED[type(node.ops[arg])]()
        return node
    if kind == "boolop":
        node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        return node
    if kind == "binop":
        node.op = ast.Sub() if isinstance(node.op, ast.Add) else ast.Add()
        return node
    if kind == "constant":
        node.value = _mutated_constant(node.value)
        return node
    if kind == "drop" and len(node.values) > 2:
        del node.values[arg]
        return node
    if kind == "drop":
        new = node.values[1 - arg]
    elif kind == "not":
        new = node.operand
    elif kind == "delete":
        new = ast.copy_location(ast.Pass(), node)
    else:
        raise ValueError(kind)
    _replace(parent, node, new)
    return new


def _statement_lines(tree: ast.AST) -> dict[int, int]:
    """id of each expression node -> the first line of the statement it is in.

    coverage.py counts a statement spread over several lines on its first line only.
    """
    first: dict[int, int] = {}

    def visit(node, line):
        if isinstance(node, ast.stmt):
            line = node.lineno
        first[id(node)] = line
        for child in ast.iter_child_nodes(node):
            visit(child, line)

    visit(tree, 1)
    return first


def _functions(tree: ast.AST) -> dict[int, tuple[str, bool]]:
    """id of each node -> (the qualified name of the function or class it is in, run at import?).

    A function's body runs when it is called; everything else (module level,
    class bodies, decorators and default values) runs when the module is imported.
    """
    names: dict[int, tuple[str, bool]] = {}

    def visit(node, scope, at_import):
        names[id(node)] = (scope or "<module>", at_import)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            inner = f"{scope}.{node.name}" if scope else node.name
            for child in node.body:
                visit(child, inner, at_import and isinstance(node, ast.ClassDef))
            others = [c for c in ast.iter_child_nodes(node) if not any(c is b for b in node.body)]
            for child in others:
                visit(child, scope, at_import)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, scope, at_import)

    visit(tree, "", True)
    return names


def mutants(source: str) -> list[Mutant]:
    tree = ast.parse(source)
    skipped, functions, statements = _skipped_nodes(tree), _functions(tree), _statement_lines(tree)
    found = []
    nodes = sorted(enumerate(ast.walk(tree)), key=lambda item: (getattr(item[1], "lineno", 0),
                                                                getattr(item[1], "col_offset", 0), item[0]))
    for index, node in nodes:
        if id(node) in skipped:
            continue
        for kind, arg in _changes(node):
            fresh = ast.parse(source)
            target = list(ast.walk(fresh))[index]
            before = _short(target)
            after = "(deleted)" if kind == "delete" else _short(_apply(fresh, target, kind, arg))
            if kind == "delete":
                before = "delete " + before
            found.append(Mutant(len(found) + 1, index, kind, arg, node.lineno, statements[id(node)],
                                getattr(node, "end_lineno", None) or node.lineno,
                                *functions[id(node)], before, after))
    return found


def mutated_code(source: str, path: str, mutant: Mutant):
    tree = ast.parse(source)
    _apply(tree, list(ast.walk(tree))[mutant.node], mutant.kind, mutant.arg)
    return compile(ast.fix_missing_locations(tree), path, "exec", dont_inherit=True)


class _MutantFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Hands out the mutated code for one module name."""

    def __init__(self, name: str, path: str, code):
        self.name, self.path, self.code = name, path, code

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        return importlib.util.spec_from_file_location(fullname, self.path, loader=self)

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        exec(self.code, module.__dict__)


# -- the map: which tests reach which line ----------------------------------------------------

def _checkout_key(args: list[str]) -> str:
    digest = hashlib.sha256(json.dumps(args).encode())
    found = []
    for folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = [d for d in subfolders if not d.startswith(".") and d not in ("build", "dist", "state")]
        found += [Path(folder) / name for name in files if name.endswith(".py") and name != "_mutation.py"]
    for path in sorted(found):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update((ROOT / "pytest.ini").read_bytes())
    return digest.hexdigest()


class _ContextPlugin:
    """Gives each test its own coverage context, and notes how each test went and how long it took."""

    def __init__(self, cov):
        self.cov = cov
        self.durations: dict[str, float] = {}
        self.failed: set[str] = set()

    def pytest_runtest_setup(self, item):
        self.cov.switch_context(item.nodeid)

    def pytest_runtest_logreport(self, report):
        self.durations[report.nodeid] = self.durations.get(report.nodeid, 0.0) + report.duration
        if report.failed:
            self.failed.add(report.nodeid)

    def pytest_runtest_teardown(self, item, nextitem):
        pass

    def pytest_sessionfinish(self, session):
        self.cov.switch_context("")


def _build_map(paths: list[Path], args: list[str]) -> dict:
    """Run the tests once under coverage; each line of `paths` -> the tests that ran it."""
    import coverage
    import pytest

    cov = coverage.Coverage(data_file=None, include=[str(p) for p in paths], branch=False)
    plugin = _ContextPlugin(cov)
    cov.start()
    try:
        code = pytest.main(args, plugins=[plugin])
    finally:
        cov.stop()
    if code not in (0, 1):
        raise SystemExit(f"the mapping run of the tests failed (pytest exit code {code})")
    data = cov.get_data()
    lines = {}
    for path in paths:
        by_line = data.contexts_by_lineno(str(path)) or {}
        lines[str(path.relative_to(ROOT))] = {str(n): sorted(c for c in contexts if c) for n, contexts in by_line.items()}
    preload = sorted(name for name, module in list(sys.modules.items())
                     if not _is_project(getattr(module, "__file__", None)))
    return {"key": _checkout_key(args), "lines": lines, "durations": plugin.durations,
            "failed": sorted(plugin.failed), "preload": preload}


def _is_project(file) -> bool:
    if not file:
        return False
    try:
        path = Path(file).resolve()
    except OSError:
        return False
    return ROOT in path.parents and ".venv" not in path.relative_to(ROOT).parts


def map_args(path: Path) -> list[str]:
    relative = str(path.relative_to(ROOT))
    return [*MAP_OPTIONS, *[t for t in MAP_TESTS.get(relative, WHOLE_SUITE) if not t.startswith("tests/")
                            or (ROOT / t).exists()]]


def load_map(paths: list[Path], args: list[str], remap: bool) -> dict:
    """The map of `paths` (kept in .mutation/ until a Python file of the checkout changes)."""
    CACHE.mkdir(exist_ok=True)
    stored = CACHE / ("map-" + "+".join(str(p.relative_to(ROOT)).replace("/", "_") for p in paths) + ".json")
    if not remap and stored.exists():
        found = json.loads(stored.read_text())
        if found.get("key") == _checkout_key(args):
            return found
    print(f"mapping which tests reach {', '.join(str(p.relative_to(ROOT)) for p in paths)} "
          f"(one run of the tests under coverage) ...", flush=True)
    started = time.monotonic()
    with tempfile.TemporaryFile() as out:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the mapping run imports the project: keep this process clean for the mutants
            os.close(read)
            os.dup2(out.fileno(), 1)
            os.dup2(out.fileno(), 2)
            try:
                result = json.dumps(_build_map(paths, args)).encode()
                with os.fdopen(write, "wb") as pipe:
                    pipe.write(result)
                os._exit(0)
            except BaseException as error:  # noqa: BLE001 - report anything, then leave
                os.write(2, f"mapping failed: {error!r}\n".encode())
                os._exit(3)
        os.close(write)
        with os.fdopen(read, "rb") as pipe:
            payload = pipe.read()
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0 or not payload:
            out.seek(0)
            sys.stderr.write(out.read().decode(errors="replace")[-5000:])
            raise SystemExit("the mapping run failed")
    found = json.loads(payload)
    print(f"  mapped in {time.monotonic() - started:.0f} s", flush=True)
    if found["failed"]:
        print(f"  {len(found['failed'])} test(s) fail without any mutant; they select no mutant: "
              + ", ".join(found["failed"][:5]), flush=True)
    stored.write_text(json.dumps(found))
    return found


def tests_for(mutant: Mutant, module_lines: dict, durations: dict, failed: set) -> list[str]:
    """The passing tests that run a line of the mutant, quickest first.

    A mutant of what runs at import (module level, class bodies, decorators,
    defaults) selects every test that reaches the module at all: whichever test
    imported it first is the only one its lines were seen in.
    """
    if mutant.at_import:
        chosen = {t for tests in module_lines.values() for t in tests}
    else:
        lines = range(min(mutant.first_line, mutant.line), mutant.end_line + 1)
        chosen = {t for line in lines for t in module_lines.get(str(line), ())}
    return sorted(chosen - failed, key=lambda t: (durations.get(t, 0.0), t))


# -- running the mutants ---------------------------------------------------------------------

@dataclass
class Result:
    mutant: Mutant
    status: str  # killed, survived, timeout, no tests
    tests: int
    seconds: float


def _run_child(name, path, code, tests, log_path, basetemp):
    """In a forked process: run `tests` with the mutant in place of module `name`."""
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.setpgid(0, 0)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    sys.dont_write_bytecode = True
    sys.meta_path.insert(0, _MutantFinder(name, path, code))
    import pytest

    try:
        code = pytest.main(["-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", f"--basetemp={basetemp}",
                            *tests])
    except BaseException:  # noqa: BLE001
        code = 3
    os._exit(int(code))


QUICK = 0.25
"""Seconds: a mutant runs its selected tests quicker than this first (only their files are
collected, so a mutant a unit test kills costs no start of the end-to-end files), then the rest."""


def _stages(tests: list[str], durations: dict) -> list[list[str]]:
    quick = [t for t in tests if durations.get(t, 1.0) < QUICK]
    rest = [t for t in tests if durations.get(t, 1.0) >= QUICK]
    return [stage for stage in (quick, rest) if stage]


def run_mutants(module: str, path: Path, chosen: list[Mutant], mapping: dict, workers: int,
                log_dir: Path) -> list[Result]:
    source = path.read_text()
    module_lines = mapping["lines"][str(path.relative_to(ROOT))]
    durations, failed = mapping["durations"], set(mapping["failed"])
    queue = [(m, None) for m in chosen]  # (mutant, the stages still to run, once known)
    running: dict[int, tuple] = {}
    results: list[Result] = []
    scratch = Path(tempfile.mkdtemp(prefix="mutation-"))
    try:
        while queue or running:
            while queue and len(running) < workers:
                mutant, stages = queue.pop(0)
                if stages is None:
                    tests = tests_for(mutant, module_lines, durations, failed)
                    if not tests:
                        results.append(Result(mutant, "no tests", 0, 0.0))
                        _progress(results, len(chosen))
                        continue
                    stages = _stages(tests, durations)
                tests, later = stages[0], stages[1:]
                code = mutated_code(source, str(path), mutant)
                limit = 30.0 + 3 * sum(durations.get(t, 1.0) for t in tests)
                basetemp = scratch / f"m{mutant.number}-{len(later)}"
                pid = os.fork()
                if pid == 0:
                    _run_child(module, str(path), code, tests,
                               log_dir / f"{mutant.number}{'-quick' if later else ''}.log", basetemp)
                running[pid] = (mutant, time.monotonic(), limit, len(tests), later)
            time.sleep(0.05)
            for pid, (mutant, started, limit, count, later) in list(running.items()):
                done, status = os.waitpid(pid, os.WNOHANG)
                elapsed = time.monotonic() - started
                if done == 0 and elapsed <= limit:
                    continue
                if done == 0:
                    os.killpg(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    outcome = "timeout"
                else:
                    exit_code = os.waitstatus_to_exitcode(status)
                    outcome = "survived" if exit_code == 0 else "killed"
                del running[pid]
                if outcome == "survived" and later:
                    queue.insert(0, (mutant, later))
                    continue
                results.append(Result(mutant, outcome, count, elapsed))
                _progress(results, len(chosen))
    finally:
        for pid in running:
            os.killpg(pid, signal.SIGKILL)
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)
    print(file=sys.stderr)
    return sorted(results, key=lambda r: r.mutant.number)


def _progress(results, total):
    killed = sum(r.status in ("killed", "timeout") for r in results)
    sys.stderr.write(f"\r  {len(results)}/{total} mutants run, {killed} killed")
    sys.stderr.flush()


def module_name(path: Path) -> str:
    relative = path.resolve().relative_to(ROOT).with_suffix("")
    return ".".join(relative.parts)


def _preload(names: list[str]) -> None:
    """Import the third-party modules the tests use once, so each forked mutant starts quickly."""
    import importlib

    import pytest  # noqa: F401

    for name in names:
        if name.startswith(("_pytest", "pytest", "coverage", "__main__")) or name in ("__mp_main__",):
            continue
        try:
            importlib.import_module(name)
        except BaseException:  # noqa: BLE001 - a module that will not import alone is simply not preloaded
            pass
    stray = [name for name, module in sys.modules.items() if _is_project(getattr(module, "__file__", None))]
    for name in stray:  # a third-party module that imported the project: the mutants must import it afresh
        del sys.modules[name]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/mutation", description=(
        "Mutate each module given and run, for each mutant, the tests that reach its lines."))
    parser.add_argument("modules", nargs="+", type=Path, help="module files, e.g. b2iconik/workflows/verify.py")
    parser.add_argument("--only", type=int, nargs="+", metavar="N", help="run only mutants numbered N")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--workers", type=int, default=int(os.environ.get("MUTATION_WORKERS", "2")),
                        help="mutants run at once (default 2, or MUTATION_WORKERS)")
    parser.add_argument("--remap", action="store_true", help="map which tests reach which line afresh")
    parser.add_argument("--map-args", default=None,
                        help="pytest arguments of the mapping run (default: the module's MAP_TESTS)")
    args = parser.parse_args(argv)
    paths = [p.resolve() for p in args.modules]
    for path in paths:
        if not path.is_file() or ROOT not in path.parents:
            parser.error(f"{path}: not a module file of this checkout")
    if args.list:
        for path in paths:
            for mutant in mutants(path.read_text()):
                print(f"{path.relative_to(ROOT)} {mutant.label()}")
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    maps = {path: load_map([path], args.map_args.split() if args.map_args else map_args(path), args.remap)
            for path in paths}
    _preload(sorted({name for found in maps.values() for name in found["preload"]}))
    exit_code = 0
    for path in paths:
        mapping = maps[path]
        relative = path.relative_to(ROOT)
        found = mutants(path.read_text())
        chosen = [m for m in found if not args.only or m.number in args.only]
        log_dir = CACHE / "logs" / str(relative).replace("/", "_")
        log_dir.mkdir(parents=True, exist_ok=True)
        for stale in log_dir.glob("*.log") if not args.only else ():
            stale.unlink()
        print(f"{relative}: {len(chosen)} mutant(s)", flush=True)
        started = time.monotonic()
        results = run_mutants(module_name(path), path, chosen, mapping, args.workers, log_dir)
        killed = [r for r in results if r.status in ("killed", "timeout")]
        alive = [r for r in results if r not in killed]
        score = 100.0 * len(killed) / len(results) if results else 100.0
        print(f"{relative}: {len(killed)} of {len(results)} killed ({score:.1f} %) "
              f"in {time.monotonic() - started:.0f} s; logs in {log_dir.relative_to(ROOT)}/")
        for result in alive:
            print(f"  {result.status}: {result.mutant.label()}")
        (CACHE / f"{str(relative).replace('/', '_')}.json").write_text(json.dumps(
            [{"number": r.mutant.number, "line": r.mutant.line, "function": r.mutant.function,
              "before": r.mutant.before, "after": r.mutant.after, "status": r.status, "tests": r.tests}
             for r in results], indent=1))
        if alive:
            exit_code = 1
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
