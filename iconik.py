"""A small client for the part of iconik's REST API this plugin uses.

One `IconikClient` holds one `requests.Session` with the `App-ID` and
`Auth-Token` headers. Every call has a timeout, goes through a rate limiter
shared by every client with the same credentials, and is retried with
exponential backoff on 429 (honouring `Retry-After`), 502/503/504 and
connection errors. Lists are iterators that follow `next_url`.

Tokens never appear in logs, reprs or exception text.
"""

from __future__ import annotations

import contextlib
import contextvars
import email.utils
import fcntl
import hashlib
import itertools
import logging
import math
import os
import random
import re
import struct
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any, Iterator
from urllib.parse import urljoin, urlsplit

import requests
import tenacity
import urllib3.util
from urllib3.exceptions import LocationParseError, NewConnectionError

DEFAULT_URL = "https://app.iconik.io"
DEFAULT_MAX_RPS = 46.0
"""A little under iconik's documented ~50 requests/s and 1000 per 20 s.

With the shared limiter's burst of 3, at most 49 calls count in any 1 s window as
iconik stamps them (each from its send until its answer, `RateLimiter`), and so at
most 980 in any 20 s; the rate alone sends at most 923 in 20 s. For every process of
the host together, when they keep their budget in one state directory (`SharedSchedule`)."""
DEFAULT_TIMEOUT = (5.0, 30.0)
DEFAULT_ATTEMPTS = 6
PAGE_SIZE = 100
MAX_PAGES = 10_000
"""The most pages of one list the client follows when iconik gives no `total` (a million objects)."""
BULK_LIMIT = 500
"""The bulk copy endpoint takes at most this many ids per call."""
SEARCH_PAGE_SIZE = 1000
"""The most documents a search answers per call (iconik's SearchQueryParamsSchema)."""
STORAGE_FILE_FILTERS = ("path", "directory_path", "name", "status", "date_modified")
"""The filters of the storage file listing (`GET /storages/{id}/files/`)."""

CONTEXTS = ("ASSET", "COLLECTION", "BULK")
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})

log = logging.getLogger(__name__)

_FORMAT_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_URL_TEXT = re.compile(r"^[\x21-\x5b\x5d-\x7e]*$")
"""What a path or link may hold: printable ASCII without spaces or backslashes (percent-encode the rest)."""
_DEFAULT_PORTS = {"http": 80, "https": 443}


observers: list = []
"""Callables told of each call sent: `observer(status)`, the HTTP status or None when no answer
came. The client knows nothing of what they do (the plugin counts calls); one that raises is ignored."""


def _observe(status: int | None) -> None:
    for observer in list(observers):
        try:
            observer(status)
        except Exception:
            log.debug("an iconik call observer failed", exc_info=True)


class IconikError(Exception):
    """iconik answered with an error, or could not be reached."""

    _without_status = "no answer"

    def __init__(self, status: int | None, method: str, path: str, message: str):
        self.status = status
        self.method = method
        self.path = path
        self.message = message
        where = f"{method} {path}"
        what = f"HTTP {status}" if status is not None else self._without_status
        super().__init__(f"iconik {where} failed: {what}: {message}")


class NotSent(IconikError):
    """The call was refused before it was sent: its URL would leave ICONIK_URL's host, or is malformed."""

    _without_status = "not sent"


class BadAnswer(IconikError):
    """iconik answered, but with what makes no sense for the call (a list that does not end, a page
    that is not a page): asking again would get the same."""

    _without_status = "odd answer"


class NotFound(IconikError):
    """iconik answered 404: the thing asked for does not exist."""


class Unauthorized(IconikError):
    """iconik rejected the credentials (401) or refused the call (403)."""


class _Retryable(IconikError):
    """A failure worth another try; `retry_after` is iconik's hint, if any."""

    def __init__(self, *args, retry_after: float | None = None, unsent: bool = False):
        super().__init__(*args)
        self.retry_after = retry_after
        self.unsent = unsent


def check_uuid(value: Any, what: str = "id") -> str:
    """Return `value` as a canonical UUID string, or raise ValueError."""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a UUID string")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ValueError(f"{what} is not a UUID: {value[:60]!r}") from None


def check_format_name(name: Any) -> str:
    if not isinstance(name, str) or not _FORMAT_NAME.match(name):
        raise ValueError(f"not a format name: {str(name)[:60]!r}")
    return name


class _Turns:
    """Callers waiting for a rate limiter's next slot, served one party at a time in rotation.

    A party that was served goes to the back of the rotation, and keeps its place there
    while its caller comes back for the next slot; a party whose place comes round with
    no caller waiting leaves the rotation.
    """

    def __init__(self):
        self._queues: dict[Any, list[threading.Event]] = {}  # in rotation order

    def __len__(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    def join(self, party, turn: threading.Event) -> None:
        self._queues.setdefault(party, []).append(turn)

    def next(self) -> threading.Event | None:
        """The turn of the first waiting caller of the next party; None when no one waits."""
        while self._queues:
            party = next(iter(self._queues))
            queue = self._queues.pop(party)
            if queue:
                self._queues[party] = queue  # to the back, whether or not more of it wait
                return queue.pop(0)
        return None


WINDOW = 1.0
"""iconik's shortest window (s): a limiter lets no more than its `per_window` calls count in any one."""
MAX_FLIGHT = 60.0
"""The longest a call not yet answered counts in the window (a process that died in a call leaves it behind)."""
_LAPSE_SLACK = 1e-6
"""A call counts until a hair before its window ends, against rounding in the schedule's float arithmetic."""


class _Budget:
    """What a limiter's schedule holds: GCRA's theoretical arrival time (`tat`), and the calls that
    still count in iconik's window: (sent, counts until, ticket) each."""

    __slots__ = ("tat", "calls")

    def __init__(self, tat: float = 0.0, calls: list[tuple[float, float, int]] | None = None):
        self.tat = tat
        self.calls = calls if calls is not None else []

    def forget_lapsed(self, now: float) -> None:
        self.calls = [call for call in self.calls if call[1] > now + _LAPSE_SLACK]

    def free_in(self, now: float) -> float:
        """Seconds until the window may have room: when the first call counted lapses; at most one
        window, as a call answered now counts one window more."""
        return min(min(until for _, until, _ in self.calls), now + WINDOW) - now


_tickets = itertools.count(1)


def _ticket() -> int:
    """A call's id, unique on the host while the call counts: the process id (22 bits) and a count
    (30 bits), under 2**53 so that it is kept exactly as a float in the budget file."""
    return ((os.getpid() & 0x3FFFFF) << 30) | (next(_tickets) & 0x3FFFFFFF)


class _Schedule:
    """A limiter's schedule in this process alone."""

    def __init__(self):
        self._budget = _Budget()

    def update(self, change):
        """`change(budget) -> result`, which may change the budget; returns the result. The limiter's lock is held."""
        return change(self._budget)


def _boot_id() -> bytes:
    """This boot's id (16 bytes; empty where the system does not say): monotonic time is per boot."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as file:
            return uuid.UUID(file.read().strip()).bytes
    except (OSError, ValueError):
        return b""


class SharedSchedule:
    """A limiter's schedule kept in a small file, shared by every process of the host that opens it.

    The file holds the TAT (8 bytes), the boot's id (16 bytes), and the calls counted in
    iconik's window (a count, then 24 bytes each); each update reads and writes them
    under an exclusive `flock`, which the kernel releases when a process dies holding
    it. Times are CLOCK_MONOTONIC (`time.monotonic`), which every process of one boot
    reads alike and which no clock step moves; a schedule written in another boot
    counts for nothing. Nothing is fsynced: the budget need not outlive the boot.
    """

    _FORMAT = struct.Struct("<d16s")
    _COUNT = struct.Struct("<I")
    _CALL = struct.Struct("<ddd")
    _MOST_CALLS = 100_000
    _HORIZON = 3600.0
    """A time further ahead than this is no schedule (a damaged file): it starts afresh."""

    def __init__(self, path: os.PathLike | str, clock=time.monotonic):
        self.path = os.fspath(path)
        self._clock = clock
        self._boot = _boot_id().ljust(16, b"\0")
        self._fd: int | None = None
        self._pid: int | None = None

    def open(self) -> None:
        """Open (and create, 0600) the file; OSError if the state directory does not allow it."""
        if self._fd is not None and self._pid == os.getpid():
            return
        # A child of fork shares its parent's open file, and so its lock: open it anew.
        self._fd, self._pid = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600), os.getpid()

    def __del__(self):
        if self._fd is not None and self._pid == os.getpid():
            try:
                os.close(self._fd)
            except OSError:
                pass

    def update(self, change):
        """`change(budget) -> result` under the file's lock, which may change the budget; returns the result."""
        self.open()
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            budget = self._read()
            result = change(budget)
            count = len(budget.calls)
            calls = struct.pack(f"<{3 * count}d", *itertools.chain.from_iterable(budget.calls))
            os.pwrite(self._fd, self._FORMAT.pack(budget.tat, self._boot) + self._COUNT.pack(count) + calls, 0)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        return result

    def _read(self) -> _Budget:
        head = os.pread(self._fd, self._FORMAT.size + self._COUNT.size, 0)
        if len(head) < self._FORMAT.size:
            return _Budget()
        tat, boot = self._FORMAT.unpack(head[:self._FORMAT.size])
        horizon = self._clock() + self._HORIZON
        if boot != self._boot or not math.isfinite(tat) or tat > horizon:
            return _Budget()
        whole = len(head) == self._FORMAT.size + self._COUNT.size  # a file of before the window has no count
        count = self._COUNT.unpack(head[self._FORMAT.size:])[0] if whole else 0
        raw = os.pread(self._fd, count * self._CALL.size, len(head)) if 0 < count <= self._MOST_CALLS else b""
        if len(raw) != count * self._CALL.size:
            return _Budget(tat)
        values = struct.unpack(f"<{3 * count}d", raw)
        if not all(map(math.isfinite, values)) or max(values[1::3], default=0.0) > horizon:
            return _Budget(tat)
        return _Budget(tat, list(zip(values[0::3], values[1::3], values[2::3])))


def budget_file(budget_dir: os.PathLike | str, key: tuple) -> str:
    """The shared schedule's file for `key` (iconik's URL and the app id; never a token)."""
    digest = hashlib.sha256("\n".join(str(part) for part in key).encode()).hexdigest()[:16]
    return os.path.join(os.fspath(budget_dir), f"iconik-budget-{digest}")


class RateLimiter:
    """A thread-safe limiter allowing `rate` calls/s with bursts of `burst`, and never more than
    `per_window` calls in flight or answered within the last second.

    The rate is paced by GCRA. The window is what iconik counts: a call counts from when
    it is sent until one window after its answer, so however late a call reaches iconik
    (a process descheduled after taking its slot, a server that holds calls and then
    answers them together), iconik's stamp of it falls in that span, and no window of
    iconik's can hold more than `per_window` of them. `per_window` (floor(rate) + burst)
    is what GCRA allows in a second anyway: the window only binds when answers are late.

    `shared()` returns one limiter per key, so every client built with the same
    credentials draws on the same budget, whichever thread it runs in. Callers
    take their turn for a slot one at a time, by `party` in rotation (`_Turns`):
    a party with many threads (a big job) gets the same share as a party with one
    (the next click), instead of one share per thread.

    With a `schedule` (a `SharedSchedule`), the slots and the window are shared with
    the other processes of the host; the turns by party stay within this process.
    """

    _shared: dict[tuple, "RateLimiter"] = {}
    _shared_lock = threading.Lock()

    def __init__(self, rate: float, burst: int | None = None, clock=time.monotonic, sleep=time.sleep,
                 schedule: SharedSchedule | None = None):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.burst = burst if burst is not None else max(1, int(rate // 5))
        self.per_window = int(self.rate * WINDOW) + self.burst
        self._interval = 1.0 / self.rate
        self._tolerance = (self.burst - 1) * self._interval
        self._schedule = schedule or _Schedule()
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep
        self._waiting = _Turns()
        self._turn_taken = False

    @classmethod
    def shared(cls, key: tuple, rate: float, budget_dir: os.PathLike | str | None = None) -> "RateLimiter":
        """The process's limiter for `key`; with `budget_dir` (the state directory), drawing on the host's budget.

        A state directory that does not exist or allows no budget file leaves the limiter
        to this process alone, with a warning: the budget keeps iconik from answering 429,
        which the client also survives, and is no reason to stop a report.
        """
        budget_dir = os.fspath(budget_dir) if budget_dir is not None else None
        known_as = (key, rate) if budget_dir is None else (key, rate, budget_dir)
        with cls._shared_lock:
            limiter = cls._shared.get(known_as)
            if limiter is None:
                schedule = None
                if budget_dir is not None:
                    schedule = SharedSchedule(budget_file(budget_dir, key))
                    try:
                        schedule.open()
                    except OSError as error:
                        log.warning("the iconik rate budget cannot be shared with the host's other processes "
                                    "(%s: %s); this process keeps its own %.0f requests/s", budget_dir,
                                    error.strerror or type(error).__name__, rate)
                        schedule = None
                # iconik counts every 1 s window, and a window can see rate + burst calls:
                # a burst of rate/5 drew 429s at the start of each job (bench/benchmark.py);
                # rate/15 keeps the default 46/s at 49 in any second.
                limiter = cls._shared[known_as] = cls(rate, max(1, int(rate // 15)), schedule=schedule)
            return limiter

    def _slot(self) -> tuple[float, float]:
        """Take the next slot of the rate: (now, seconds until it). The limiter's lock is held."""
        def change(budget):
            now = self._clock()
            tat = max(budget.tat, now)
            budget.tat = tat + self._interval
            return now, tat - self._tolerance - now
        return self._update(change)

    def _update(self, change):
        """The schedule's `update`; if the shared file fails, this process goes on alone (the lock is held)."""
        try:
            return self._schedule.update(change)
        except OSError as error:
            log.warning("the iconik rate budget file failed (%s); this process keeps its own %.0f requests/s "
                        "from now on", error.strerror or type(error).__name__, self.rate)
            self._schedule = _Schedule()
            return self._schedule.update(change)

    def _count_call(self, at: float, flight: float) -> tuple[int, float]:
        """Count a call sent at `at` (or later, when the clock is past it) in the window, waiting while
        the window is full: (the call's ticket, seconds waited). A call not answered within `flight`
        stops counting one window after it."""
        ticket, waited = _ticket(), 0.0
        while True:
            def change(budget):
                now = max(self._clock(), at)
                budget.forget_lapsed(now)
                if len(budget.calls) < self.per_window:
                    budget.calls.append((now, now + flight + WINDOW, ticket))
                    return None
                return budget.free_in(now)
            with self._lock:
                wait = self._update(change)
            if wait is None:
                return ticket, waited
            self._sleep(wait)
            waited += wait
            at += wait

    def _answered(self, ticket: int) -> None:
        """The call's answer came (or it failed): it counts one window more."""
        def change(budget):
            now = self._clock()
            budget.calls = [(sent, max(now, sent) + WINDOW, mine) if mine == ticket else (sent, until, mine)
                            for sent, until, mine in budget.calls]
        with self._lock:
            self._update(change)

    def _take(self, party, flight: float) -> tuple[float, int]:
        """Wait for the turn, the next slot and room in the window: (seconds waited, the call's ticket).

        One caller at a time holds the turn: it takes the next slot and waits for it,
        then for room in the window, then hands the turn to the next party's first
        waiting caller. `party` (e.g. a job's id) says whose share a call draws on;
        None is a party too.
        """
        turn = threading.Event()
        with self._lock:
            queued_at = self._clock() if self._turn_taken else None
            if queued_at is not None:
                self._waiting.join(party, turn)
            else:
                self._turn_taken = True
                turn.set()
        turn.wait()
        try:
            with self._lock:
                now, delay = self._slot()
            if delay > 0:
                self._sleep(delay)
            ticket, held = self._count_call(now + max(0.0, delay), flight)
        finally:
            with self._lock:
                following = self._waiting.next()
                if following is None:
                    self._turn_taken = False
                else:
                    following.set()
        return max(0.0, delay) + held + (now - queued_at if queued_at is not None else 0.0), ticket

    def acquire(self, party=None) -> float:
        """Wait for the next slot, for a call counted as answered at once; returns the seconds waited."""
        return self._take(party, 0.0)[0]

    @contextlib.contextmanager
    def sending(self, party=None):
        """Wait (as `acquire`) for a slot for one call, sent in the block: the call counts in the
        window from now until one window after the block ends (its answer, or its failure)."""
        ticket = self._take(party, MAX_FLIGHT)[1]
        try:
            yield
        finally:
            self._answered(ticket)

    def try_acquire(self, max_wait: float) -> bool:
        """Take the next slot if it comes within `max_wait` s (waiting for it); False, taking none, if not.

        The call counts as answered at its slot."""
        return self._try_take(max_wait, 0.0) is not None

    @contextlib.contextmanager
    def try_sending(self, max_wait: float):
        """As `sending`, for a caller that must not wait long: yields False (and takes nothing) when no
        slot comes within `max_wait` s; else True, and the call sent in the block counts in the
        window from its slot until one window after the block ends."""
        ticket = self._try_take(max_wait, MAX_FLIGHT)
        try:
            yield ticket is not None
        finally:
            if ticket is not None:
                self._answered(ticket)

    def _try_take(self, max_wait: float, flight: float) -> int | None:
        """The next slot's ticket if it comes within `max_wait` s (waiting for it), counted in the
        window until `flight` and a window after it (or, once answered, one window after that); None
        if it does not come in time."""
        at, left, ticket = self._clock(), max_wait, _ticket()
        while True:
            def change(budget):
                now = max(self._clock(), at)
                budget.forget_lapsed(now)
                if len(budget.calls) >= self.per_window:
                    wait = budget.free_in(now)
                    return ("full", wait) if wait <= left else ("refused", None)
                tat = max(budget.tat, now)
                delay = tat - self._tolerance - now
                if delay > left:
                    return "refused", None
                budget.tat = tat + self._interval
                sent = now + max(0.0, delay)
                budget.calls.append((sent, sent + flight + WINDOW, ticket))
                return "taken", delay
            with self._lock:
                verdict, wait = self._update(change)
            if verdict == "refused":
                return None
            if wait > 0:
                self._sleep(wait)
            if verdict == "taken":
                return ticket
            at, left = at + wait, left - wait

    def pause(self, seconds: float) -> None:
        """Hold every caller back for `seconds` (iconik said it is overloaded)."""
        def change(budget):
            budget.tat = max(budget.tat, self._clock() + seconds + self._tolerance)
        with self._lock:
            self._update(change)


def _wait_for(retry_state: tenacity.RetryCallState, base: float, cap: float) -> float:
    """Backoff: iconik's Retry-After when given, else exponential with full jitter."""
    error = retry_state.outcome.exception() if retry_state.outcome else None
    hint = getattr(error, "retry_after", None)
    if hint is not None:
        return min(hint, cap) + random.uniform(0, base)
    return random.uniform(0, min(cap, base * 2 ** (retry_state.attempt_number - 1)))


def _parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delay-seconds or HTTP-date)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    if not math.isfinite(seconds):  # "inf" would stall (or break) the shared limiter for good
        return None
    return max(0.0, seconds)


def _origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an absolute http(s) URL, default port filled in.

    None when it has no host, carries a user name or password, or when urllib and
    urllib3 (which requests sends with) do not read the same scheme, host and port.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
        other = urllib3.util.parse_url(url)
    except (ValueError, LocationParseError):
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    if parts.username is not None or parts.password is not None or other.auth is not None:
        return None
    mine = (scheme, parts.hostname.lower(), port if port is not None else _DEFAULT_PORTS[scheme])
    other_scheme = (other.scheme or "").lower()
    theirs = (other_scheme, (other.host or "").lower().strip("[]"),
              other.port if other.port is not None else _DEFAULT_PORTS.get(other_scheme))
    return mine if mine == theirs else None


def _shown(path: Any) -> str:
    """A path as it may appear in an error: no query, no odd characters, not too long."""
    if not isinstance(path, str):
        return repr(path)[:120]
    text = path.split("?", 1)[0]
    return text if _URL_TEXT.match(text) and len(text) <= 200 else repr(text[:120])


def _error_message(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return (response.text or response.reason or "").strip()[:300]
    if isinstance(body, dict):
        errors = body.get("errors") or body.get("error") or body.get("message")
        if isinstance(errors, list):
            return "; ".join(str(e) for e in errors)[:300]
        if errors:
            return str(errors)[:300]
    return str(body)[:300]


class IconikClient:
    """iconik's assets, files and jobs services, as the plugin needs them."""

    def __init__(
        self,
        app_id: str,
        auth_token: str,
        base_url: str = DEFAULT_URL,
        *,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        max_rps: float | None = DEFAULT_MAX_RPS,
        attempts: int = DEFAULT_ATTEMPTS,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        session: requests.Session | None = None,
        pool_size: int = 32,
        party: str | None = None,
        budget_dir: os.PathLike | str | None = None,
    ):
        """`party` names whose share of the shared rate limiter the calls draw on (a job);
        `budget_dir` (the state directory) shares the rate with the host's other processes."""
        if not app_id or not auth_token:
            raise ValueError("an iconik App-ID and Auth-Token are required")
        self.base_url = base_url.rstrip("/") + "/"
        self._origin = _origin(self.base_url)
        self.timeout = timeout
        self.limiter = RateLimiter.shared((self.base_url, app_id), max_rps, budget_dir) if max_rps else None
        self.party = party
        self.session = session or requests.Session()
        if session is None:
            adapter = requests.adapters.HTTPAdapter(pool_connections=2, pool_maxsize=pool_size)
            self.session.mount("https://", adapter)
            self.session.mount("http://", adapter)
        self._max_backoff = max_backoff
        self.session.headers.update(
            {"App-ID": app_id, "Auth-Token": auth_token, "Accept": "application/json"}
        )
        self._retrying = dict(
            stop=tenacity.stop_after_attempt(max(1, attempts)),
            wait=lambda state: _wait_for(state, backoff, max_backoff),
            reraise=True,
        )

    def __repr__(self) -> str:
        return f"IconikClient(base_url={self.base_url!r})"

    def close(self) -> None:
        self.session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- transport ---------------------------------------------------------

    def request(self, method: str, path: str, *, idempotent: bool = True, with_status: bool = False,
                **kwargs) -> Any:
        """Send one call, with retries; return the decoded JSON body (or None).

        With `with_status`, return (HTTP status, body) instead. A non-idempotent
        call (creating something) is retried only when iconik certainly did not
        act on it: a 429 or a failure to connect.
        """
        retry_on = (lambda e: isinstance(e, _Retryable)) if idempotent else (
            lambda e: isinstance(e, _Retryable) and (e.status == 429 or e.unsent)
        )
        retrying = tenacity.Retrying(retry=tenacity.retry_if_exception(retry_on), **self._retrying)
        try:
            status, body = retrying(self._send, method, path, **kwargs)
            return (status, body) if with_status else body
        except _Retryable as error:
            raise IconikError(error.status, error.method, error.path, error.message) from None

    def resolve(self, method: str, path: str) -> str:
        """The absolute URL of `path` (or of a link iconik sent), refused unless it is on ICONIK_URL's host.

        A path hangs off the base URL ("API/..." and "/API/..." alike); an absolute URL
        or a network-path reference ("//host/...") is taken as it is. The URL is resolved
        first and then compared, so that nothing the resolution normalises away (leading
        blanks or control characters, "@", a changed scheme or port) can send the
        Auth-Token anywhere but ICONIK_URL's scheme, host and port. Raises NotSent
        (an IconikError; nothing is sent).
        """
        if not isinstance(path, str) or not _URL_TEXT.match(path):
            raise NotSent(None, method, _shown(path),
                          "refused: the path has characters iconik's URLs never have (whitespace, "
                          "control characters, backslashes or non-ASCII); nothing was sent")
        if self._origin is None:
            raise NotSent(None, method, _shown(path),
                          "ICONIK_URL is not an http(s) URL with a host (and no user name or password); "
                          "nothing was sent")
        url = urljoin(self.base_url, path if path.startswith("//") else path.lstrip("/"))
        if _origin(url) != self._origin:
            scheme, host, port = self._origin
            raise NotSent(None, method, _shown(path),
                          f"refused: the URL is on another host than ICONIK_URL ({scheme}://{host}:{port}); "
                          "nothing was sent")
        return url

    def _send(self, method: str, path: str, **kwargs) -> Any:
        url = self.resolve(method, path)
        shown = _shown(path)
        response = None
        try:
            # Never follow a redirect: requests keeps the Auth-Token on a redirect to another host.
            with self.limiter.sending(self.party) if self.limiter else contextlib.nullcontext():
                started = time.monotonic()
                response = self.session.request(method, url, timeout=self.timeout, allow_redirects=False, **kwargs)
        except requests.ConnectionError as error:
            reason = getattr(error.args[0], "reason", None) if error.args else None
            unsent = isinstance(error, requests.ConnectTimeout) or isinstance(reason, NewConnectionError)
            raise _Retryable(None, method, shown, f"could not connect ({type(error).__name__})",
                             unsent=unsent) from None
        except requests.Timeout:
            raise _Retryable(None, method, shown, f"no answer within {self.timeout} s") from None
        except requests.exceptions.ChunkedEncodingError:
            raise _Retryable(None, method, shown, "the answer was cut off") from None
        except requests.RequestException as error:
            raise IconikError(None, method, shown, f"request failed ({type(error).__name__})") from None
        finally:
            _observe(None if response is None else response.status_code)
        log.debug("iconik %s %s -> %s in %.0f ms", method, shown, response.status_code,
                  (time.monotonic() - started) * 1000)
        status = response.status_code
        if status in RETRYABLE_STATUSES:
            retry_after = _parse_retry_after(response.headers.get("Retry-After"))
            if status == 429 and self.limiter:
                # Never hold every caller back longer than one retry may wait.
                self.limiter.pause(min(retry_after if retry_after is not None else 1.0, self._max_backoff))
            raise _Retryable(status, method, shown, _error_message(response), retry_after=retry_after)
        if 300 <= status < 400:
            raise IconikError(status, method, shown, "iconik answered with a redirect, which was not followed "
                              "(the client never follows redirects; check ICONIK_URL)")
        if status == 404:
            raise NotFound(status, method, shown, _error_message(response))
        if status in (401, 403):
            raise Unauthorized(status, method, shown, _error_message(response))
        if status >= 400:
            raise IconikError(status, method, shown, _error_message(response))
        if status == 204 or not response.content:
            return status, None
        try:
            return status, response.json()
        except ValueError:
            raise IconikError(status, method, shown, "answer is not JSON") from None

    def paginate(self, path: str, params: dict | None = None) -> Iterator[dict]:
        """Yield every object of a list, following `next_url` (opaque) page by page (see `pages`)."""
        for page in self.pages(path, params):
            yield from page.get("objects") or []

    def pages(self, path: str, params: dict | None = None) -> Iterator[dict]:
        """Yield every page of a list (its envelope: `objects`, `total`, ...), following `next_url`.

        A 404 on the first page is raised (iconik's "... don't exist": none); a 404 on a
        later page ends the list, as a cursor list's full last page can carry a `next_url`
        whose page answers 404. The pages are capped as `_scroll`'s are (`_past_page_cap`).
        """
        query = {"per_page": PAGE_SIZE, **(params or {})}
        page = _list_page(self.request("GET", path, params=query), path)
        followed = set()
        pages = 0
        while True:
            objects = page.get("objects") or []
            yield page
            pages += 1
            next_url = page.get("next_url")
            if not next_url:
                return
            if _past_page_cap(pages, page.get("total"), len(objects)):
                raise BadAnswer(None, "GET", _shown(path), f"iconik's list did not end after {pages} pages "
                                  "(more than its total, or the most the client follows)")
            try:
                url = self.resolve("GET", next_url)
            except NotSent as error:
                raise NotSent(None, "GET", _shown(path),
                              f"iconik's next page link was not followed: {error.message}") from None
            if url in followed:
                raise BadAnswer(None, "GET", _shown(path), "iconik sent the same next page twice")
            followed.add(url)
            try:
                page = _list_page(self.request("GET", next_url), path)
            except NotFound:
                return

    # -- assets service ----------------------------------------------------

    def get_asset(self, asset_id: str) -> dict:
        return self.request("GET", f"API/assets/v1/assets/{check_uuid(asset_id, 'asset id')}/")

    def get_collection(self, collection_id: str) -> dict:
        cid = check_uuid(collection_id, "collection id")
        return self.request("GET", f"API/assets/v1/collections/{cid}/")

    def iter_collection_contents(self, collection_id: str) -> Iterator[dict]:
        cid = check_uuid(collection_id, "collection id")
        return self.paginate(f"API/assets/v1/collections/{cid}/contents/",
                             {"object_types": "collections,assets"})

    def iter_collection_contents_pages(self, collection_id: str) -> Iterator[dict]:
        """The pages of a collection's contents, each with its `total` (which an edit can change)."""
        cid = check_uuid(collection_id, "collection id")
        return self.pages(f"API/assets/v1/collections/{cid}/contents/", {"object_types": "collections,assets"})

    def list_custom_actions(self) -> list[dict]:
        return list(self.paginate("API/assets/v1/custom_actions/"))

    def create_custom_action(self, context: str, body: dict) -> dict:
        return self.request("POST", f"API/assets/v1/custom_actions/{_context(context)}/",
                            json=body, idempotent=False)

    def update_custom_action(self, context: str, action_id: str, body: dict) -> dict:
        aid = check_uuid(action_id, "custom action id")
        return self.request("PUT", f"API/assets/v1/custom_actions/{_context(context)}/{aid}/", json=body)

    def delete_custom_action(self, context: str, action_id: str) -> None:
        aid = check_uuid(action_id, "custom action id")
        self.request("DELETE", f"API/assets/v1/custom_actions/{_context(context)}/{aid}/")

    # -- users and ACLs ----------------------------------------------------

    def current_user(self) -> dict:
        """The user the token belongs to."""
        return self.request("GET", "API/users/v1/users/current/")

    def check_access(self, object_type: str, permission: str, object_ids: list[str]) -> tuple[list[str], list[str]]:
        """(granted, denied) of `permission` on each object for the token's user, at most BULK_LIMIT ids.

        An id iconik names in neither list is denied. Unauthorized (403) when the user may not
        read ACLs (the `can_read_acls` role).
        """
        if object_type not in ("assets", "collections") or permission not in ("read", "write", "delete"):
            raise ValueError("not an ACL check this client makes")
        ids = [check_uuid(item, "object id") for item in object_ids]
        if len(ids) > BULK_LIMIT:
            raise ValueError(f"at most {BULK_LIMIT} ids per ACL check")
        answer = self.request("POST", f"API/acls/v1/acl/{object_type}/{permission}/", json={"object_keys": ids})
        granted = (answer or {}).get("access_granted") if isinstance(answer, dict) else None
        allowed = {item.lower() for item in granted if isinstance(item, str)} if isinstance(granted, list) else set()
        return [item for item in ids if item in allowed], [item for item in ids if item not in allowed]

    # -- files service -----------------------------------------------------

    def get_storage(self, storage_id: str) -> dict:
        return self.request("GET", f"API/files/v1/storages/{check_uuid(storage_id, 'storage id')}/")

    def iter_formats(self, asset_id: str) -> Iterator[dict]:
        return self.paginate(f"API/files/v1/assets/{check_uuid(asset_id, 'asset id')}/formats/")

    def get_format(self, asset_id: str, format_name: str) -> dict:
        aid = check_uuid(asset_id, "asset id")
        return self.request("GET", f"API/files/v1/assets/{aid}/formats/{check_format_name(format_name)}/")

    def iter_file_sets(self, asset_id: str) -> Iterator[dict]:
        return self.paginate(f"API/files/v1/assets/{check_uuid(asset_id, 'asset id')}/file_sets/")

    def iter_files(self, asset_id: str) -> Iterator[dict]:
        return self.paginate(f"API/files/v1/assets/{check_uuid(asset_id, 'asset id')}/files/",
                             {"generate_signed_url": "false"})

    def iter_file_set_files(self, asset_id: str, file_set_id: str) -> Iterator[dict]:
        aid = check_uuid(asset_id, "asset id")
        fsid = check_uuid(file_set_id, "file set id")
        return self.paginate(f"API/files/v1/assets/{aid}/file_sets/{fsid}/files/",
                             {"generate_signed_url": "false"})

    def iter_storage_files(self, storage_id: str, **filters) -> Iterator[dict]:
        """Every file on one storage, from iconik's search index, scrolled 100 at a time.

        `filters` are the listing's own (STORAGE_FILE_FILTERS): `path`, `directory_path`,
        `name`, `status` (comma-separated; default every status but DELETED) and
        `date_modified` ("from;to"). The index can lag behind recent changes: good for
        reports and finding candidates, never proof before a delete.
        """
        sid = check_uuid(storage_id, "storage id")
        unknown = sorted(set(filters) - set(STORAGE_FILE_FILTERS))
        if unknown:
            raise ValueError(f"not a filter of the storage file listing: {', '.join(unknown)}")
        params = {key: str(value) for key, value in filters.items() if value is not None}
        return self._scroll(f"API/files/v1/storages/{sid}/files/", params)

    def search_assets(self, terms: list[dict], include_fields: list[str],
                      per_page: int = SEARCH_PAGE_SIZE) -> Iterator[dict]:
        """Every asset document of iconik's search index that all `terms` match, `per_page` a call.

        A term is iconik's `{name, value}` or `{name, value_in}` (e.g. `files.storage_id`).
        Every search sends `generate_signed_url=false` and `save_search_history=false`
        (both default to true). Sorted by id; each next page is the same body with
        `search_after` from the last document's `_sort`, or the next `page` when the
        documents carry none, and it is asked for while the caller takes in this one.
        The index lags behind changes: never proof before a delete.
        """
        path = "API/search/v1/search/"
        params = {"per_page": per_page, "generate_signed_url": "false", "save_search_history": "false"}
        body = {"doc_types": ["assets"], "query": "", "filter": {"operator": "AND", "terms": list(terms)},
                "include_fields": list(include_fields), "sort": [{"name": "id", "order": "asc"}]}

        def fetch(body: dict, page: int) -> dict | None:
            try:
                return self.request("POST", path, params={**params, "page": page}, json=body) or {}
            except NotFound:
                if page == 1 and "search_after" not in body:
                    raise
                return None  # a page past the end

        page, seen, calls = 1, 0, 0
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="search") as ahead:
            pending = ahead.submit(contextvars.copy_context().run, fetch, body, page)
            while pending is not None:
                answer = pending.result()
                if answer is None:
                    return
                calls += 1
                objects = [o for o in answer.get("objects") or [] if isinstance(o, dict)]
                seen += len(objects)
                total = answer.get("total")
                pending = None
                if objects and not (isinstance(total, int) and seen >= total):
                    if calls >= MAX_PAGES:
                        raise BadAnswer(None, "POST", path, f"iconik's search did not end after {calls} pages")
                    last = objects[-1].get("_sort")
                    if isinstance(last, list) and last:
                        body = {**body, "search_after": last}
                    else:
                        page += 1
                    pending = ahead.submit(contextvars.copy_context().run, fetch, body, page)
                yield from objects

    def _scroll(self, path: str, params: dict) -> Iterator[dict]:
        """Yield every object of a search-index list read with `scroll=true`.

        Each page's `next_url` names the same scroll (so it may repeat); the scroll
        ends on a page without objects or `next_url`, or once `total` objects came.
        """
        page = self.request("GET", path, params={"per_page": PAGE_SIZE, "scroll": "true", **params})
        seen = pages = 0
        while True:
            objects = (page or {}).get("objects") or []
            yield from objects
            seen += len(objects)
            pages += 1
            total = (page or {}).get("total")
            next_url = (page or {}).get("next_url")
            if not objects or not next_url or (isinstance(total, int) and seen >= total):
                return
            if _past_page_cap(pages, total, len(objects)):
                raise BadAnswer(None, "GET", _shown(path), "iconik's scroll did not end after its total")
            try:
                self.resolve("GET", next_url)
            except NotSent as error:
                raise NotSent(None, "GET", _shown(path),
                              f"iconik's next page link was not followed: {error.message}") from None
            page = self.request("GET", next_url)

    def delete_file_set(self, asset_id: str, file_set_id: str, *, immediately: bool = False) -> bool:
        """Delete a file set; `immediately` asks iconik to purge its records and bytes too.

        Returns True when iconik answered 204 (purged), False when it answered 200
        (soft-deleted: in iconik's recycle bin until purged).
        """
        aid = check_uuid(asset_id, "asset id")
        fsid = check_uuid(file_set_id, "file set id")
        params = {"immediately": "true"} if immediately else None
        status, _ = self.request("DELETE", f"API/files/v1/assets/{aid}/file_sets/{fsid}/", params=params,
                                 with_status=True)
        return status == 204

    def purge_file_set(self, asset_id: str, file_set_id: str) -> None:
        aid = check_uuid(asset_id, "asset id")
        fsid = check_uuid(file_set_id, "file set id")
        self.request("DELETE", f"API/files/v1/assets/{aid}/file_sets/{fsid}/purge/")

    def bulk_copy(self, storage_id: str, object_ids: list[str], format_name: str,
                  object_type: str = "assets") -> dict:
        """Queue a copy of one format of up to 500 assets (or collections) onto a storage.

        Safe to retry: iconik does not duplicate a transfer that is already there.
        """
        if not 0 < len(object_ids) <= BULK_LIMIT:
            raise ValueError(f"bulk copy takes 1 to {BULK_LIMIT} ids, not {len(object_ids)}")
        if object_type not in ("assets", "collections"):
            raise ValueError(f"object_type must be assets or collections, not {object_type!r}")
        body = {
            "object_ids": [check_uuid(i, "object id") for i in object_ids],
            "object_type": object_type,
            "format_name": check_format_name(format_name),
        }
        sid = check_uuid(storage_id, "storage id")
        return self.request("POST", f"API/files/v1/storages/{sid}/bulk/", json=body)

    # -- jobs service ------------------------------------------------------

    def get_job(self, job_id: str) -> dict:
        return self.request("GET", f"API/jobs/v1/jobs/{check_uuid(job_id, 'job id')}/")

    def iter_child_jobs(self, parent_id: str) -> Iterator[dict]:
        """The jobs whose `parent_id` is `parent_id` (a bulk copy's transfers), every page."""
        return self.paginate("API/jobs/v1/jobs/", {"parent_id": check_uuid(parent_id, "job id")})

    def iter_jobs_by_id(self, job_ids: list[str]) -> Iterator[dict]:
        """The jobs of `job_ids` (`GET /jobs/?ids=a,b,c`), PAGE_SIZE ids a call, every page.

        iconik's jobs list is a search index: a job made a moment ago (or gone) may be missing."""
        ids = [check_uuid(i, "job id") for i in job_ids]
        for start in range(0, len(ids), PAGE_SIZE):
            try:
                yield from self.paginate("API/jobs/v1/jobs/", {"ids": ",".join(ids[start:start + PAGE_SIZE])})
            except NotFound:  # iconik answers 404 for an empty list: none of these is listed
                continue

    def iter_jobs(self, job_type: str, status: str, created_since: float) -> Iterator[dict]:
        """The jobs of `job_type` in `status` created at or after `created_since` (epoch seconds),
        every page. iconik's jobs list is a search index: a job made a moment ago may be missing."""
        since = datetime.fromtimestamp(created_since, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return self.paginate("API/jobs/v1/jobs/", {"type": job_type, "status": status,
                                                   "date_created": f"{since};*"})

    def create_job(self, body: dict) -> dict:
        """Create a Jobs panel entry. Retried only when iconik certainly did not get it: after a
        lost answer the entry may exist (its caller looks for it rather than making a second)."""
        return self.request("POST", "API/jobs/v1/jobs/", idempotent=False, json=body)

    def update_job(self, job_id: str, changes: dict) -> dict:
        return self.request("PATCH", f"API/jobs/v1/jobs/{check_uuid(job_id, 'job id')}/", json=changes)


def _list_page(page: Any, path: str) -> dict:
    """One page of a list as iconik sends it: a JSON object whose `objects` is a list (or absent)."""
    if page is None:
        return {}
    if not isinstance(page, dict) or not isinstance(page.get("objects") or [], list):
        raise BadAnswer(None, "GET", _shown(path), "iconik's answer is not a page of a list")
    return page


def _past_page_cap(pages: int, total: Any, per_page: int) -> bool:
    """Have `pages` pages gone past what a list may hold: its `total` in pages of `per_page`,
    and 2 more, or MAX_PAGES when iconik gives no total?"""
    if isinstance(total, int) and not isinstance(total, bool) and total >= 0:
        return pages > total // max(1, per_page) + 2
    return pages >= MAX_PAGES


def _context(context: str) -> str:
    if context not in CONTEXTS:
        raise ValueError(f"context must be one of {', '.join(CONTEXTS)}")
    return context
