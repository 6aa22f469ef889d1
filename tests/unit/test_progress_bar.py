"""The command line's progress: counted stages with rate and time left, waits with time left, only on a terminal."""

import io
import re

from b2iconik.progress_bar import ProgressBar, Waiting


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def drawn_lines(text: str) -> list[str]:
    return [line.strip() for line in text.split("\r") if line.strip()]


def test_a_counted_stage_shows_count_share_rate_and_time_left_and_clears_its_line(monkeypatch):
    stream = Terminal()
    with ProgressBar("", stream=stream, unit="assets") as bar:
        bar.start("reading assets", 4)
        for _ in range(4):
            bar.advance()
    lines = drawn_lines(stream.getvalue())
    last = lines[-1]
    assert last.startswith("reading assets [") and "4/4 100%" in last, lines
    assert re.search(r"[\d.]+ assets/s, \d\d:\d\d left$", last), last
    assert stream.getvalue().endswith("\r"), "the line is cleared at the end"
    assert stream.getvalue().rstrip("\r").split("\r")[-1].strip() == ""


def test_a_new_stage_starts_its_count_again_and_an_uncounted_one_shows_its_rate():
    stream = Terminal()
    bar = ProgressBar("listing LucidLink files", None, stream=stream, unit="files")
    for _ in range(3):
        bar.advance()
    assert bar.done == 3
    bar.start("reading assets", 10, unit="assets")
    assert bar.done == 0
    bar.close()
    assert any(re.fullmatch(r"listing LucidLink files 0 files, \? files/s", line)
               for line in drawn_lines(stream.getvalue()))


def test_nothing_is_drawn_off_a_terminal_or_when_disabled():
    piped = io.StringIO()
    with ProgressBar("reading", 4, stream=piped) as bar:
        bar.advance()
    off = Terminal()
    with ProgressBar("reading", 4, stream=off, enabled=False) as bar:
        bar.advance()
    with Waiting("waiting", 60, stream=piped) as wait:
        wait.note("running")
    assert piped.getvalue() == off.getvalue() == ""


def test_a_wait_shows_what_it_waits_for_the_time_so_far_and_the_time_left_of_its_limit():
    stream, now = Terminal(), [100.0]
    with Waiting("waiting for the Add job", 300, stream=stream, clock=lambda: now[0]) as wait:
        now[0] += 75
        wait.note("running, phase wait")
        now[0] += 400
        wait.note("running, phase check")
    lines = drawn_lines(stream.getvalue())
    assert "waiting for the Add job (running, phase wait): 01:15 so far, at most 03:45 left" in lines
    assert "waiting for the Add job (running, phase check): 07:55 so far, at most 00:00 left" in lines
