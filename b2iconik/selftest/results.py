"""The self-test's report: each check's result as it finishes, and the summary at the end."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, TextIO

import requests

import iconik
from b2iconik import cli
from b2iconik.selftest.context import HTTP_TIMEOUT


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
            result = failed(cli.describe_error(error))
        except requests.RequestException as error:
            result = failed(f"could not reach the plugin: {describe_request_error(error)}")
        except cli.CommandError as error:
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
