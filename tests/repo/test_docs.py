"""README.md and docs/: every command that runs this project names a real command and only
options it accepts, and every relative link points at a file and heading that exist.

Commands are found in the fenced (and indented) code blocks, where they are checked whole
with the command's own argparse parser (placeholders such as `<job id>` stand for one
value; `[...]` marks what may be left out; a command with `...` in it is checked by its
options only), and in inline code spans, checked by their options only. A command is one
that invokes the project: `python -m b2iconik ...` (any python, also under sudo or
docker), `b2iconik ...`, `python -m b2iconik.cloud.bench`, `python -m bench.benchmark`,
`create_custom_actions.py`, `delete_custom_actions.py`, `./scripts/...`,
`gunicorn ... plugin:app` and `functions-framework --target iconik_handler`. The old
`python -m b2iconik.<module>` forms may be named in prose, never in a block to run.
Nothing is run: each command's parser is taken from its own `main` as it starts to parse.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import functools
import importlib
import importlib.util
import io
import re
import shlex
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.harness import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_LANGUAGES = {"", "sh", "bash", "shell", "console"}
PLACEHOLDER = "PLACEHOLDER"
ELIDED = "..."
PYTHON = re.compile(r"(?:^|/)python(?:3(?:\.\d+)?)?$")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
SEPARATORS = {";", "&&", "||", "|", "&", "(", ")", "{", "}"}
KEYWORDS = {"while", "until", "do", "done", "then", "if", "fi", "else", "elif", "for", "!", "exec", "time"}


@dataclass(frozen=True)
class Command:
    doc: str
    line: int
    words: tuple[str, ...]
    whole: bool  # from a code block: parsed whole; inline: options only

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}: {shlex.join(self.words)}"


# -- finding the commands --------------------------------------------------------------------


def code_blocks(text: str) -> list[tuple[int, list[str]]]:
    """(first line number, lines) of each shell-like fenced block and each indented block."""
    blocks, lines = [], text.split("\n")
    fence, language, start, body = None, "", 0, []
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if fence is None and stripped.startswith("```"):
            fence, language, start, body = line[: len(line) - len(line.lstrip())], stripped[3:].strip(), number + 1, []
            continue
        if fence is not None:
            if stripped == "```":
                if language in SHELL_LANGUAGES:
                    blocks.append((start, [b[len(fence):] if b.startswith(fence) else b for b in body]))
                fence = None
            else:
                body.append(line)
    # Indented blocks: four spaces after a blank line, below a paragraph that is not a list.
    number, previous = 0, ""
    in_fence = False
    while number < len(lines):
        line = lines[number]
        if line.strip().startswith("```"):
            in_fence = not in_fence
        if (not in_fence and line.startswith("    ") and number > 0 and not lines[number - 1].strip()
                and previous and not previous.startswith((" ", "-", "*", "|")) and not re.match(r"\d+\.", previous)):
            start, body = number + 1, []
            while number < len(lines) and (lines[number].startswith("    ") or not lines[number].strip()):
                body.append(lines[number][4:])
                number += 1
            blocks.append((start, body))
            continue
        if line.strip():
            previous = line
        number += 1
    return blocks


def inline_spans(text: str) -> list[tuple[int, str]]:
    """(line number, text) of each inline code span outside the fenced blocks' fences."""
    kept = ["" if line.strip().startswith("```") else line for line in text.split("\n")]
    joined = "\n".join(kept)
    spans = []
    for match in re.finditer(r"`([^`]+)`", joined):
        if "\n\n" not in match.group(1):
            spans.append((joined.count("\n", 0, match.start()) + 1, match.group(1).replace("\n", " ")))
    return spans


def logical_lines(block: list[str]) -> list[tuple[int, str]]:
    """Lines with backslash continuations joined and here-document bodies left out."""
    out, pending, first, heredoc = [], "", 0, None
    for offset, line in enumerate(block):
        if heredoc is not None:
            if line.strip() == heredoc:
                heredoc = None
            continue
        if not pending:
            first = offset
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        whole = pending + line
        pending = ""
        marker = re.search(r"<<-?\s*['\"]?(\w+)['\"]?", whole)
        if marker:
            heredoc = marker.group(1)
            whole = whole[: marker.start()]
        out.append((first, whole))
    if pending:
        out.append((first, pending))
    return out


def substitutions(text: str) -> tuple[str, list[str]]:
    """`$(...)` replaced by one word; the commands inside, to be checked too."""
    inner = []

    def replace(match: re.Match) -> str:
        inner.append(match.group(1))
        return "SUBST"

    while True:
        text, count = re.subn(r"\$\(([^()]*)\)", replace, text)
        if not count:
            return text, inner


def simple_commands(text: str) -> list[list[str]]:
    """Split one line of shell into its simple commands' words (comments, redirections gone)."""
    text = re.sub(r"<[^<>\n]*>", PLACEHOLDER, text)  # <job id>, <b2_storage_id>, <this repository>
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|(){}<>")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        tokens = list(lexer)
    except ValueError:  # an unbalanced quote: not a command line
        return []
    commands, words, skip = [], [], False
    for token in tokens:
        if skip:
            skip = False
            continue
        if token in SEPARATORS:
            commands.append(words)
            words = []
        elif token and set(token) <= set("<>&") and token[0] in "<>":
            skip = True  # a redirection and its target
        else:
            words.append(token)
    commands.append(words)
    return [c for c in commands if c]


def unwrapped(words: list[str]) -> list[str]:
    """Without leading keywords, VAR=value settings, and sudo with its options."""
    while words:
        if words[0] in KEYWORDS or ASSIGNMENT.match(words[0]):
            words = words[1:]
        elif words[0] == "sudo":
            words = words[1:]
            while words and words[0].startswith("-"):
                words = words[2:] if words[0] in ("-u", "-g") else words[1:]
        else:
            return words
    return words


def project_command(words: list[str]) -> tuple[str, list[str]] | None:
    """(program, its arguments) when the words run this project, else None."""
    words = [w.strip("[]") if w not in ("[", "]") else w for w in words]
    for i, word in enumerate(words):
        if PYTHON.search(word) and i + 1 < len(words):
            nxt = words[i + 1]
            if nxt == "-m" and i + 2 < len(words):
                module = words[i + 2]
                if module == "b2iconik" or module.startswith(("b2iconik.", "bench")):
                    return "module:" + module, words[i + 3:]
                return None
            if nxt.endswith(("create_custom_actions.py", "delete_custom_actions.py")):
                return "script:" + Path(nxt).name, words[i + 2:]
            return None
        if word.endswith(("create_custom_actions.py", "delete_custom_actions.py")) and i == 0:
            return "script:" + Path(word).name, words[1:]
    words = unwrapped(words)
    if not words:
        return None
    head = words[0]
    if head == "b2iconik" and len(words) > 1:  # alone, it is the package's (or the user's) name
        return "module:b2iconik", words[1:]
    if re.match(r"^(\./)?scripts/", head):
        return "path:" + head.removeprefix("./"), words[1:]
    if head.endswith("gunicorn") and len(words) > 1:
        return "gunicorn", words[1:]
    if head == "functions-framework":
        return "functions-framework", words[1:]
    return None


def commands_of(doc: Path) -> list[Command]:
    text = doc.read_text()
    name = str(doc.relative_to(ROOT))
    found = []

    def add(line: int, source: str, whole: bool) -> None:
        source, inner = substitutions(source)
        for part in [source, *inner]:
            for words in simple_commands(part):
                if project_command(words):
                    found.append(Command(name, line, tuple(words), whole))

    for start, block in code_blocks(text):
        for offset, line in logical_lines(block):
            add(start + offset, line, True)
    for line, span in inline_spans(text):
        add(line, span, False)
    return found


ALL_COMMANDS = [command for doc in DOCS for command in commands_of(doc)]


# -- checking them against the real parsers --------------------------------------------------


class _Captured(BaseException):
    """Raised by the first parse a command's main starts: carries its parser."""

    def __init__(self, parser: argparse.ArgumentParser, method: str):
        super().__init__()
        self.parser, self.method = parser, method


@contextlib.contextmanager
def _capturing():
    methods = ("parse_args", "parse_known_args", "parse_intermixed_args", "parse_known_intermixed_args")
    originals = {name: getattr(argparse.ArgumentParser, name) for name in methods}

    def stand_in(name):
        def capture(self, *args, **kwargs):
            raise _Captured(self, name)
        return capture

    for name in methods:
        setattr(argparse.ArgumentParser, name, stand_in(name))
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(argparse.ArgumentParser, name, original)


@functools.lru_cache(maxsize=None)
def parser_of(program: str) -> tuple[argparse.ArgumentParser, str]:
    """The parser `program`'s main builds, and the parse method it calls; nothing is run."""
    if program.startswith("b2iconik "):
        main = functools.partial(importlib.import_module("b2iconik.__main__").main, [program.split()[1]])
    elif program.startswith("script:"):
        module = importlib.import_module(program.removeprefix("script:").removesuffix(".py"))
        main = functools.partial(module.main, [])
    else:
        main = functools.partial(importlib.import_module(program).main, [])
    with _capturing(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            main()
        except _Captured as captured:
            return captured.parser, captured.method
    raise AssertionError(f"{program} ended without parsing its arguments")


def options_of(parser: argparse.ArgumentParser, args: list[str]) -> set[str]:
    """Every option string the parser accepts, with those of the subcommand named in args."""
    options = set()
    for action in parser._actions:
        options |= set(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for word in args:
                if word in action.choices:
                    options |= options_of(action.choices[word], [])
                    break
    return options


def check_with_parser(command: Command, program: str, args: list[str]) -> None:
    parser, method = parser_of(program)
    accepted = options_of(parser, args)
    used = {word.split("=", 1)[0] for word in args if word.startswith("-") and word not in ("-",)
            and not re.fullmatch(r"-\d.*", word)}
    unknown = sorted(used - accepted)
    assert not unknown, f"{command}\n  {program} has no option {', '.join(unknown)}"
    if command.whole and ELIDED not in args:
        errors = io.StringIO()
        with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
            try:
                getattr(parser, method)(args)
            except SystemExit:
                message = (errors.getvalue().strip().splitlines() or ["(no message)"])[-1]
                raise AssertionError(f"{command}\n  {program} refuses it: {message}") from None
            except Exception as error:  # cli.ArgumentParser raises its UsageError
                raise AssertionError(f"{command}\n  {program} refuses it: {error}") from None


def runnable(module: str) -> bool:
    """Whether `python -m module` runs something: a package with a __main__, or a module with a main guard."""
    spec = importlib.util.find_spec(module)
    if spec is None:
        return False
    if spec.submodule_search_locations:
        return importlib.util.find_spec(module + ".__main__") is not None
    return 'if __name__ == "__main__":' in Path(spec.origin).read_text()


def check(command: Command) -> None:
    program, args = project_command(list(command.words))
    if program.startswith("module:"):
        module = program.removeprefix("module:")
        if module == "b2iconik":
            commands = importlib.import_module("b2iconik.__main__").COMMANDS
            if not args or args[0] in (PLACEHOLDER, ELIDED, "--help", "-h", "--version"):
                return
            assert args[0] in commands, f"{command}\n  python -m b2iconik has no command {args[0]!r}"
            return check_with_parser(command, f"b2iconik {args[0]}", args[1:])
        if PLACEHOLDER in module:
            return
        assert runnable(module), f"{command}\n  python -m {module} runs nothing: write python -m b2iconik <command>"
        return check_with_parser(command, module, args)
    if program.startswith("script:"):
        assert (ROOT / program.removeprefix("script:")).is_file(), command
        return check_with_parser(command, program, args)
    if program.startswith("path:"):
        path = ROOT / program.removeprefix("path:")
        assert path.is_file(), f"{command}\n  no {path.relative_to(ROOT)}"
        if path.name == "demo":
            return check_with_parser(command, "b2iconik demo", args)
        if path.name == "stage-function":
            assert len([a for a in args if a != ELIDED]) <= 1, f"{command}\n  stage-function takes one DIR"
        return None
    if program == "gunicorn":
        from gunicorn.config import Config

        with contextlib.redirect_stderr(io.StringIO()):
            try:
                parsed = Config().parser().parse_args(args)
            except SystemExit:
                raise AssertionError(f"{command}\n  gunicorn refuses it") from None
        assert parsed.config and (ROOT / parsed.config).is_file(), f"{command}\n  no config {parsed.config}"
        for app in parsed.args:
            module, _, name = app.partition(":")
            assert defines(ROOT / f"{module}.py", name or "application"), f"{command}\n  no {app}"
        return None
    if program == "functions-framework":
        import click
        from functions_framework._cli import _cli

        try:
            context = _cli.make_context("functions-framework", list(args))
        except click.ClickException as error:
            raise AssertionError(f"{command}\n  functions-framework refuses it: {error}") from None
        source = ROOT / (context.params.get("source") or "main.py")
        assert defines(source, context.params["target"]), f"{command}\n  {source.name} has no {context.params['target']}"
        return None
    raise AssertionError(f"{command}: not understood")


def defines(path: Path, name: str) -> bool:
    """Whether the module at path defines name at its top level (or serves it by __getattr__)."""
    if not path.is_file():
        return False
    tree = ast.parse(path.read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return name in names or ("__getattr__" in names and f'"{name}"' in path.read_text())


def test_the_docs_show_commands_of_every_kind():
    kinds = {project_command(list(c.words))[0].split(":")[0] for c in ALL_COMMANDS}
    assert {"module", "script", "path", "gunicorn", "functions-framework"} <= kinds, kinds
    assert len(ALL_COMMANDS) > 40


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=str)
def test_every_command_names_a_real_command_and_options_it_accepts(command):
    check(command)


def test_a_wrong_command_or_option_is_caught():
    """The check itself: it refuses what a reader could not run."""
    bad = [
        ("python -m b2iconik cleanup --older 30d", True),
        ("python -m b2iconik selftst --endpoint x", True),
        (".venv/bin/python -m b2iconik jobs list --state x", True),
        ("python -m b2iconik report extra-argument", True),
        ("python -m b2iconik.selftest --endpoint x --asset y", True),
        ("python -m b2iconik.report.command", True),
        ("create_custom_actions.py --endpoints https://x", True),
        ("functions-framework --targets iconik_handler", True),
        ("functions-framework --target no_such_handler", True),
        ("gunicorn -c gunicorn.conf.py plugin:no_app", True),
        ("docker exec b2-iconik-plugin python -m b2iconik selftest --no-such ...", False),
        ("python -m b2iconik selftest --asset x", True),  # --endpoint is required
        ("python -m b2iconik jobs show", True),  # the job id is required
        ("python -m b2iconik emulator --data x --mode no_such_mode", True),
        ("./scripts/no-such-script", True),
    ]
    for text, whole in bad:
        (words,) = simple_commands(text)
        with pytest.raises(AssertionError):
            check(Command("test", 0, tuple(words), whole))


# -- links -----------------------------------------------------------------------------------


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading.strip()).lower()
    text = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LNM")
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found, counts, fence = set(), {}, False
    for line in path.read_text().split("\n"):
        if line.strip().startswith("```"):
            fence = not fence
        match = None if fence else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            base = slug(match.group(1))
            n = counts.get(base, 0)
            counts[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return found


def links(path: Path) -> list[tuple[int, str]]:
    out, fence = [], False
    for number, line in enumerate(path.read_text().split("\n"), 1):
        if line.strip().startswith("```"):
            fence = not fence
            continue
        if fence:
            continue
        line = re.sub(r"`[^`]*`", "", line)
        out += [(number, target) for target in re.findall(r"\]\(([^)\s]+)\)", line)]
    return out


LINKS = [(doc, number, target) for doc in DOCS for number, target in links(doc)
         if not re.match(r"^[a-z][a-z+.-]*:", target)]


def test_the_docs_link_to_each_other():
    assert len(LINKS) > 50
    readme = [t for d, _, t in LINKS if d.name == "README.md"]
    for guide in ("deploy-systemd.md", "deploy-container.md", "deploy-macos.md", "deploy-cloud-function.md",
                  "operating.md", "cleanup-and-reports.md", "troubleshooting.md", "performance.md",
                  "security.md", "emulator.md", "custom-actions.md", "verify.md", "development.md",
                  "how-it-works.md"):
        assert f"docs/{guide}" in {t.split("#")[0] for t in readme}, f"README.md does not link {guide}"


def link_problem(doc: Path, target: str) -> str | None:
    file, _, anchor = target.partition("#")
    path = (doc.parent / file).resolve() if file else doc
    if not path.exists():
        return f"no {file}"
    if ROOT not in path.parents:
        return "outside the repository"
    if anchor and path.suffix != ".md":
        return "an anchor into a file that is not Markdown"
    if anchor and anchor not in anchors(path):
        return f"{path.name} has no heading #{anchor}"
    return None


@pytest.mark.parametrize("doc,number,target", LINKS, ids=lambda v: str(v.relative_to(ROOT)) if isinstance(v, Path) else str(v))
def test_every_relative_link_points_at_a_file_and_heading_that_exist(doc, number, target):
    problem = link_problem(doc, target)
    assert problem is None, f"{doc.relative_to(ROOT)}:{number}: ({target}): {problem}"


def test_a_broken_link_is_caught():
    readme = ROOT / "README.md"
    assert link_problem(readme, "docs/deploy-systemd.md") is None
    assert link_problem(readme, "docs/deploy-systemd.md#behind-nginx-with-tls-and-the-firewall") is None
    assert link_problem(readme, "#how-it-works") is None
    assert link_problem(readme, "docs/no-such-guide.md")
    assert link_problem(readme, "docs/deploy-systemd.md#no-such-heading")
    assert link_problem(readme, "#no-such-heading")
    assert link_problem(readme, "../outside.md")


def test_slugs_are_githubs():
    assert slug("Listing jobs: `GET /jobs` and `python -m b2iconik jobs`") == \
        "listing-jobs-get-jobs-and-python--m-b2iconik-jobs"
    assert slug("When Remove deletes, and when it keeps") == "when-remove-deletes-and-when-it-keeps"
    assert slug("Deploy on macOS (launchd)") == "deploy-on-macos-launchd"
    assert slug("6. Deploy") == "6-deploy"


# -- what moved out of README.md keeps its checks ---------------------------------------------


def test_published_ports_in_the_docs_listen_on_localhost_only():
    """As tests/repo/test_deploy_files.py checks README.md: the container examples moved to docs/."""
    for doc in DOCS:
        text = doc.read_text()
        published = re.findall(r"(?<!`)-p\s+(\S+):8000\b", text) + re.findall(r'ports:\s*\["([^"]+)"\]', text)
        assert all(p.startswith("127.0.0.1:") or p == "127.0.0.1" for p in published), (doc.name, published)
