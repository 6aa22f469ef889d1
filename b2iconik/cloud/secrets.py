"""The shared secret: from Secret Manager, checked against its CRC32C, cached per instance.

`SharedSecret.get()` reads `projects/<project>/secrets/<name>/versions/latest`
once and keeps it for the life of the instance. A value given in the
environment (BZ_SHARED_SECRET) is used instead, with no Google call at all.
When a call brings a secret that does not match, `refresh_if_stale()` reads
the secret again, at most once per `refresh_after` seconds, so a rotated
secret is picked up without a redeploy and without letting wrong guesses
drive Secret Manager calls.

A secret shorter than the server's minimum (`config.MIN_SECRET_LENGTH`) is
refused (`SecretRefused`) as if it could not be read: no call is served with
it, and a rotation to one keeps the secret cached before it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable

import requests

from b2iconik.config import MIN_SECRET_LENGTH

log = logging.getLogger(__name__)

METADATA_PROJECT_URL = "http://metadata.google.internal/computeMetadata/v1/project/project-id"


class SecretUnavailable(Exception):
    """The secret could not be read, or what was read is damaged; the message says which."""


class SecretRefused(SecretUnavailable):
    """The secret was read whole but is not fit to guard the plugin (too short)."""


# -- CRC32C ------------------------------------------------------------------

def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        value = byte
        for _ in range(8):
            value = (value >> 1) ^ 0x82F63B78 if value & 1 else value >> 1
        table.append(value)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of `data`, as Secret Manager computes it.

    Uses the google-crc32c package when it is installed; otherwise a table
    lookup in Python, which is plenty for a secret of a few bytes.
    """
    try:
        import google_crc32c
    except ImportError:
        value = 0xFFFFFFFF
        for byte in data:
            value = _TABLE[(value ^ byte) & 0xFF] ^ (value >> 8)
        return value ^ 0xFFFFFFFF
    return int(google_crc32c.value(data))


# -- which project -----------------------------------------------------------

def find_project(explicit: str | None = None, fallback: str | None = None) -> str | None:
    """The function's own project: the environment, then the metadata server, then `fallback`."""
    for value in (explicit, os.environ.get("GOOGLE_CLOUD_PROJECT"), os.environ.get("GCP_PROJECT")):
        if value and value.strip():
            return value.strip()
    try:
        answer = requests.get(METADATA_PROJECT_URL, headers={"Metadata-Flavor": "Google"}, timeout=2)
        if answer.ok and answer.text.strip():
            return answer.text.strip()
    except requests.RequestException:
        pass
    if fallback:
        return fallback
    try:
        import google.auth
        return google.auth.default()[1]
    except Exception:  # no credentials here: nothing more to try
        return None


def _default_client():
    from google.cloud import secretmanager
    return secretmanager.SecretManagerServiceClient()


# -- the secret --------------------------------------------------------------

class SharedSecret:
    def __init__(self, *, override: str | None = None, name: str = "bz-shared-secret",
                 project: str | None = None, project_fallback: str | None = None,
                 client_factory: Callable[[], object] = _default_client,
                 refresh_after: float = 60.0, timeout: float = 10.0, clock=time.monotonic):
        self.override = override or None
        self.name = name
        self._project = project
        self._project_fallback = project_fallback
        self._client_factory = client_factory
        self._client = None
        self.refresh_after = refresh_after
        self.timeout = timeout
        self._clock = clock
        self._value: str | None = None
        self._fetched_at = 0.0
        self._lock = threading.Lock()
        self.fetches = 0

    @property
    def source(self) -> str:
        return "environment" if self.override else "secret-manager"

    def get(self) -> str:
        """The secret; read from Secret Manager on first use. Raises SecretUnavailable."""
        if self.override:
            return self.override
        with self._lock:
            if self._value is None:
                self._value = self._fetch()
                self._fetched_at = self._clock()
            return self._value

    def refresh_if_stale(self) -> str | None:
        """Read the secret again if the cached value is old enough; the new value, or None."""
        if self.override:
            return None
        with self._lock:
            if self._value is not None and self._clock() - self._fetched_at < self.refresh_after:
                return None
            try:
                value = self._fetch()
            except SecretUnavailable as error:
                log.warning("could not re-read the shared secret, keeping the cached one: %s", error)
                self._fetched_at = self._clock()
                return None
            if self._value is not None and value != self._value:
                log.info("the shared secret changed in Secret Manager; using the new version")
            self._value, self._fetched_at = value, self._clock()
            return value

    def _version_name(self) -> str:
        if self._project is None:
            self._project = find_project(None, self._project_fallback)
        if not self._project:
            raise SecretUnavailable("cannot tell the Google Cloud project (set GOOGLE_CLOUD_PROJECT) "
                                    "and BZ_SHARED_SECRET is not set")
        return f"projects/{self._project}/secrets/{self.name}/versions/latest"

    def _fetch(self) -> str:
        name = self._version_name()
        self.fetches += 1
        try:
            if self._client is None:
                self._client = self._client_factory()
            response = self._client.access_secret_version(request={"name": name}, timeout=self.timeout)
        except SecretUnavailable:
            raise
        except Exception as error:  # google.api_core errors, auth errors, transport errors
            raise SecretUnavailable(f"Secret Manager refused or failed to give {name}: "
                                    f"{type(error).__name__}: {str(error)[:300]}") from None
        payload = response.payload
        data = bytes(payload.data)
        if "data_crc32c" not in payload:
            raise SecretUnavailable(f"{name} came without a CRC32C checksum; refusing to trust it")
        if crc32c(data) != int(payload.data_crc32c) & 0xFFFFFFFF:
            raise SecretUnavailable(f"{name} failed its CRC32C check (data corrupted on the way); "
                                    "refusing to use it")
        try:
            value = data.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise SecretUnavailable(f"{name} is not UTF-8 text") from None
        if not value:
            raise SecretUnavailable(f"{name} is empty")
        if len(value) < MIN_SECRET_LENGTH:
            raise SecretRefused(f"{name} is {len(value)} characters; the shared secret must be at least "
                                f"{MIN_SECRET_LENGTH} (make one with: openssl rand -hex 32), so the "
                                "function serves no call until it is")
        log.info("read the shared secret from %s", name)
        return value
