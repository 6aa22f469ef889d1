"""gunicorn's gthread worker, made safe from slow clients (gunicorn.conf.py's worker_class).

gthread hands a connection to a thread as soon as its first byte arrives, and the
thread then waits, without any time limit, for the rest of the request: 40 clients
that send their headers a byte at a time hold every thread, and `/healthz` waits
behind them. This worker reads each request's head (request line and headers) in
the worker's event loop instead, without blocking, and gives the connection to a
thread only once the whole head is there. A head that is not complete within
`GUNICORN_READ_TIMEOUT` seconds of the first byte closes the connection; so does a
body that has not arrived within that time of the thread taking the request.
Idle keep-alive connections are closed after gunicorn's `keepalive` as before.
"""

from __future__ import annotations

import errno
import os
import time

from gunicorn.workers.gthread import ThreadWorker

DEFAULT_READ_TIMEOUT = 10.0
HEAD_END = b"\r\n\r\n"
MAX_HEAD_BUFFER = 64 * 1024
"""Past this much without the end of the head, the thread's parser takes over and refuses it (400, 431)."""


def read_timeout(env=None) -> float:
    """GUNICORN_READ_TIMEOUT: seconds a client has to send one request (default 10)."""
    raw = (os.environ if env is None else env).get("GUNICORN_READ_TIMEOUT", "").strip()
    try:
        value = float(raw) if raw else DEFAULT_READ_TIMEOUT
    except ValueError:
        raise ValueError(f"GUNICORN_READ_TIMEOUT must be a number of seconds, not {raw[:20]!r}") from None
    if not 0.1 <= value <= 300:
        raise ValueError("GUNICORN_READ_TIMEOUT must be between 0.1 and 300 seconds")
    return value


class RequestTooSlow(ConnectionResetError):
    """The client did not send its request in time; the connection is dropped."""


class _TimedSocket:
    """A client socket whose reads serve the head read ahead first, then wait until `deadline` at most."""

    def __init__(self, sock, seconds: float):
        self._sock = sock
        self.seconds = seconds
        self.ahead = b""
        self.deadline = time.monotonic() + seconds

    def read_ahead(self) -> bytes | None:
        """Read what has arrived, without blocking; b"" at the end of the stream, None when nothing came."""
        try:
            data = self._sock.recv(8192)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            return b""  # reset by the client: the thread's parser sees it and ends the connection
        self.ahead += data
        return data

    def head_complete(self) -> bool:
        return HEAD_END in self.ahead or len(self.ahead) > MAX_HEAD_BUFFER

    def recv(self, size: int, *flags) -> bytes:
        if self.ahead:
            data, self.ahead = self.ahead[:size], self.ahead[size:]
            return data
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise RequestTooSlow(errno.ECONNRESET, f"the request did not arrive within {self.seconds:g} s")
        self._sock.settimeout(remaining)
        try:
            return self._sock.recv(size, *flags)
        except TimeoutError:
            raise RequestTooSlow(errno.ECONNRESET, f"the request did not arrive within {self.seconds:g} s") from None
        finally:
            self._sock.settimeout(None)

    def __getattr__(self, name):
        return getattr(self._sock, name)


class DeadlineThreadWorker(ThreadWorker):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.read_timeout = read_timeout()
        self._heads: dict = {}
        """New connections still sending their first request's head -> when they must be done."""

    def on_client_socket_readable(self, conn, client):
        if not isinstance(conn.sock, _TimedSocket):
            conn.sock = _TimedSocket(conn.sock, self.read_timeout)
        data = conn.sock.read_ahead()
        if data is None:
            return
        if data and not conn.sock.head_complete():
            if not conn.initialized:  # a keep-alive connection is closed at its keepalive timeout instead
                self._heads.setdefault(conn, time.monotonic() + self.read_timeout)
            return
        # The head is complete, or the client closed (the thread's parser ends the connection).
        self._heads.pop(conn, None)
        super().on_client_socket_readable(conn, client)

    def handle(self, conn):
        conn.sock.deadline = time.monotonic() + self.read_timeout
        return super().handle(conn)

    def murder_keepalived(self):
        super().murder_keepalived()
        now = time.monotonic()
        for conn in [conn for conn, deadline in self._heads.items() if deadline <= now]:
            del self._heads[conn]
            self.nr_conns -= 1
            with self._lock:
                try:
                    self.poller.unregister(conn.sock)
                except (KeyError, ValueError, OSError):
                    pass
            conn.close()
            self.log.debug("closed a connection whose request did not arrive within %g s", self.read_timeout)

