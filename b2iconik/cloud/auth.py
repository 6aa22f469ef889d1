"""Proof that a call to the continuation path comes from the plugin's own queue.

Exactly one proof is accepted, by mode (the other is ignored, never a second way in):

- Cloud Tasks: an OIDC token (`Authorization: Bearer ...`) that Cloud Tasks mints
  for the queue's service account: signed by Google (google-auth checks the RS256
  signature against the certificates at OIDC_CERTS_URL, by default Google's),
  issuer Google, audience FUNCTION_URL, unexpired, e-mail TASKS_SERVICE_ACCOUNT,
  verified (`OidcVerifier`).
- in-process queue (local runs): a task signature (`x-bz-task-signature: v1=<hex>`),
  HMAC-SHA256 of the task body under a random key made when the process starts
  (`new_task_key`). The key never leaves the process and is never the shared
  secret, so knowing the shared secret does not let anyone forge a task.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "x-bz-task-signature"
_DOMAIN = b"b2-iconik-plugin task v1\n"
"""Prefixed to the body before signing, so the MAC can mean nothing else."""
TASK_KEY_BYTES = 32
GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
"""Where Google publishes the certificates of the keys that sign its OIDC tokens."""
GOOGLE_ISSUERS = ("accounts.google.com", "https://accounts.google.com")


def new_task_key() -> bytes:
    """A fresh random key for signing this process's own tasks."""
    return secrets.token_bytes(TASK_KEY_BYTES)


def sign(key: bytes, body: bytes) -> str:
    digest = hmac.new(key, _DOMAIN + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def signature_matches(key: bytes, body: bytes, given: str | None) -> bool:
    if not given:
        return False
    return hmac.compare_digest(sign(key, body).encode(), given.strip().encode("utf-8", "replace"))


class _CachingRequest:
    """A google-auth transport that keeps Google's public certificates for a while.

    `id_token.verify_token` downloads the certificates on every call; they
    change about daily, so one download an hour per instance is plenty.
    """

    def __init__(self, ttl: float = 3600.0, clock=time.monotonic):
        from google.auth.transport.requests import Request

        self._inner = Request()
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[str, tuple[float, object]] = {}
        self._lock = threading.Lock()

    def __call__(self, url, method="GET", body=None, headers=None, timeout=None, **kwargs):
        if method != "GET" or body is not None:
            return self._inner(url, method=method, body=body, headers=headers, timeout=timeout, **kwargs)
        now = self._clock()
        with self._lock:
            hit = self._cache.get(url)
        if hit and now - hit[0] < self._ttl:
            return hit[1]
        response = self._inner(url, method=method, headers=headers, timeout=timeout or 10, **kwargs)
        if response.status == 200:
            with self._lock:
                self._cache[url] = (now, response)
        return response


class OidcVerifier:
    """Checks the Bearer token Cloud Tasks (or Cloud Scheduler) sends for one service account."""

    def __init__(self, audience: str, service_account: str, certs_url: str = GOOGLE_CERTS_URL):
        self.audience = audience
        self.service_account = service_account.lower()
        self.certs_url = certs_url
        self._request = None

    def verify(self, authorization: str | None) -> tuple[bool, str]:
        """(accepted, why not) for an Authorization header value."""
        if not authorization:
            return False, "no Authorization header"
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False, "Authorization is not a Bearer token"
        from google.oauth2 import id_token

        if self._request is None:
            self._request = _CachingRequest()
        try:
            claims = id_token.verify_token(token.strip(), self._request, audience=self.audience,
                                           certs_url=self.certs_url)
        except Exception as error:  # ValueError, GoogleAuthError, transport errors
            return False, f"token not valid: {type(error).__name__}: {str(error)[:200]}"
        if claims.get("iss") not in GOOGLE_ISSUERS:
            return False, "token is not issued by Google"
        email = str(claims.get("email") or "").lower()
        if email != self.service_account:
            return False, f"token is for {email or 'no e-mail'}, not the queue's service account"
        if claims.get("email_verified") is not True:
            return False, "token's e-mail is not verified"
        return True, ""
