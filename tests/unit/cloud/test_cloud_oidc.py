"""The Cloud Function's OIDC verifier against real signatures.

Tokens are RS256 JWTs signed by a local key (tests/helpers/google_oidc.py), whose certificate a
loopback server publishes as Google's endpoint does; the verifier finds it through
OIDC_CERTS_URL and checks it with google-auth's own code. Nothing here is stubbed.
"""

from __future__ import annotations

import time

import pytest

from b2iconik.cloud import auth
from b2iconik.cloud.auth import GOOGLE_CERTS_URL, OidcVerifier
from b2iconik.cloud.config import CloudConfig
from b2iconik.config import ConfigError
from tests.helpers.google_oidc import CertificateServer, SigningKey

AUDIENCE = "https://us-central1-test-project.cloudfunctions.net/iconik_handler"
ACCOUNT = "b2-iconik-tasks@test-project.iam.gserviceaccount.com"


@pytest.fixture(scope="module")
def key():
    return SigningKey("key-1")


@pytest.fixture(scope="module")
def other_key():
    return SigningKey("key-2")


@pytest.fixture
def google(key):
    with CertificateServer(key).running() as server:
        yield server


def bearer(token: str) -> str:
    return "Bearer " + token


def test_the_queues_token_signed_by_a_published_key_is_accepted(google, key):
    verifier = OidcVerifier(AUDIENCE, ACCOUNT, google.url)
    assert verifier.verify(bearer(key.token(ACCOUNT, AUDIENCE))) == (True, "")
    # The account's e-mail is compared without regard to case, as Google's e-mails are.
    assert verifier.verify(bearer(key.token(ACCOUNT.upper(), AUDIENCE)))[0]
    assert google.hits == 1


@pytest.mark.parametrize("case, why", [
    ("wrong audience", "audience"),
    ("expired", "expired"),
    ("not yet valid", "too early"),
    ("other issuer", "not issued by Google"),
    ("other service account", "not the queue's service account"),
    ("unverified e-mail", "not verified"),
    ("other key, same key id", "signature"),
    ("other key, unknown key id", "key id"),
    ("tampered claims", "signature"),
    ("unsigned", "token not valid"),
])
def test_a_token_that_is_not_exactly_the_queues_is_refused(google, key, other_key, case, why):
    now = time.time()
    token = {
        "wrong audience": lambda: key.token(ACCOUNT, AUDIENCE + "/cleanup"),
        "expired": lambda: key.token(ACCOUNT, AUDIENCE, issued=now - 7200, lifetime=3600),
        "not yet valid": lambda: key.token(ACCOUNT, AUDIENCE, issued=now + 600),
        "other issuer": lambda: key.token(ACCOUNT, AUDIENCE, issuer="https://issuer.example.com"),
        "other service account": lambda: key.token("someone@test-project.iam.gserviceaccount.com", AUDIENCE),
        "unverified e-mail": lambda: key.token(ACCOUNT, AUDIENCE, email_verified=False),
        "other key, same key id": lambda: other_key.token(ACCOUNT, AUDIENCE, key_id=key.key_id),
        "other key, unknown key id": lambda: other_key.token(ACCOUNT, AUDIENCE),
        "tampered claims": lambda: _tampered(key.token("someone@test-project.iam.gserviceaccount.com", AUDIENCE)),
        "unsigned": lambda: _unsigned(key.token(ACCOUNT, AUDIENCE)),
    }[case]()
    verifier = OidcVerifier(AUDIENCE, ACCOUNT, google.url)
    accepted, reason = verifier.verify(bearer(token))
    assert not accepted
    assert why.lower() in reason.lower(), reason
    assert token not in reason, "the token itself is never echoed"


def _tampered(token: str) -> str:
    """The same signature over claims edited to name the queue's account."""
    import base64
    import json

    header, claims, signature = token.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    decoded["email"] = ACCOUNT
    edited = base64.urlsafe_b64encode(json.dumps(decoded).encode()).rstrip(b"=").decode()
    return f"{header}.{edited}.{signature}"


def _unsigned(token: str) -> str:
    """`alg: none` with no signature, the oldest trick against JWT verifiers."""
    import base64

    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    return f"{header}.{token.split('.')[1]}."


def test_only_a_bearer_token_is_looked_at(google, key):
    verifier = OidcVerifier(AUDIENCE, ACCOUNT, google.url)
    good = key.token(ACCOUNT, AUDIENCE)
    for header in (None, "", "Bearer ", "Basic " + good, good):
        assert not verifier.verify(header)[0], header
    assert google.hits == 0, "nothing is fetched for a header that holds no token"


def test_the_certificates_are_fetched_once_and_kept_for_an_hour(google, key, other_key):
    verifier = OidcVerifier(AUDIENCE, ACCOUNT, google.url)
    clock = [1000.0]
    verifier._request = auth._CachingRequest(clock=lambda: clock[0])
    for _ in range(5):
        assert verifier.verify(bearer(key.token(ACCOUNT, AUDIENCE)))[0]
        assert not verifier.verify(bearer(other_key.token(ACCOUNT, AUDIENCE)))[0]
    assert google.hits == 1
    # Google rotates its keys: after the hour, the certificates are fetched again and a new key is known.
    google.keys.append(other_key)
    clock[0] += 3599
    assert not verifier.verify(bearer(other_key.token(ACCOUNT, AUDIENCE)))[0] and google.hits == 1
    clock[0] += 2
    assert verifier.verify(bearer(other_key.token(ACCOUNT, AUDIENCE)))[0] and google.hits == 2


def test_certificates_that_cannot_be_fetched_refuse_the_token_and_are_not_kept(google, key):
    verifier = OidcVerifier(AUDIENCE, ACCOUNT, google.url)
    google.failures = 1
    accepted, reason = verifier.verify(bearer(key.token(ACCOUNT, AUDIENCE)))
    assert not accepted and "could not fetch certificates" in reason.lower(), reason
    assert verifier.verify(bearer(key.token(ACCOUNT, AUDIENCE)))[0]
    assert google.hits == 2


# -- the setting ----------------------------------------------------------------------------

BASE_ENV = {"ICONIK_ID": "app", "BZ_SHARED_SECRET": "s" * 32, "TASKS_MODE": "local"}


def test_the_certificates_url_defaults_to_googles():
    assert CloudConfig.from_env(BASE_ENV).oidc_certs_url == GOOGLE_CERTS_URL == \
        "https://www.googleapis.com/oauth2/v1/certs"


@pytest.mark.parametrize("url", ["https://certs.example.com/v1/certs", "http://127.0.0.1:8123/certs",
                                 "http://localhost:8123/certs", "http://[::1]:8123/certs"])
def test_an_https_or_loopback_certificates_url_is_taken(url):
    assert CloudConfig.from_env({**BASE_ENV, "OIDC_CERTS_URL": url}).oidc_certs_url == url


@pytest.mark.parametrize("url", ["http://certs.example.com/v1/certs", "http://10.0.0.8/certs", "ftp://x/certs",
                                 "certs.json", "https://"])
def test_a_certificates_url_anyone_on_the_way_could_answer_is_refused_at_start(url):
    with pytest.raises(ConfigError, match="OIDC_CERTS_URL"):
        CloudConfig.from_env({**BASE_ENV, "OIDC_CERTS_URL": url})


def test_the_function_checks_both_proofs_against_the_configured_certificates(google, key):
    """build_handler gives /continue's and /cleanup's verifiers OIDC_CERTS_URL: a real token passes
    the queue's check, the scheduler's token passes only the scheduler's."""
    from b2iconik.cloud.handler import build_handler
    from b2iconik.cloud.replies import bytes_reader

    scheduler_account = "b2-iconik-scheduler@test-project.iam.gserviceaccount.com"
    env = {"ICONIK_ID": "app", "ICONIK_URL": "http://127.0.0.1:9", "BZ_SHARED_SECRET": "s" * 32,
           "TASKS_QUEUE": "projects/test-project/locations/us-central1/queues/q", "FUNCTION_URL": AUDIENCE,
           "TASKS_SERVICE_ACCOUNT": ACCOUNT, "JOB_STORE": "memory", "TASKS_MODE": "null",
           "CLEANUP_SCHEDULER_ACCOUNT": scheduler_account, "CLEANUP_OLDER_THAN": "30d", "ICONIK_TOKEN": "t",
           "PLUGIN_B2_STORAGE_ID": "11111111-1111-4111-8111-111111111111",
           "PLUGIN_LL_STORAGE_ID": "22222222-2222-4222-8222-222222222222", "OIDC_CERTS_URL": google.url}
    handler = build_handler(CloudConfig.from_env(env))
    cleanup_audience = AUDIENCE + "/cleanup"
    assert handler.scheduler.verify(bearer(key.token(scheduler_account, cleanup_audience)))[0]
    assert not handler.scheduler.verify(bearer(key.token(ACCOUNT, cleanup_audience)))[0]
    refused = handler.handle("POST", "/cleanup", {"authorization": bearer(key.token(ACCOUNT, cleanup_audience))},
                             {}, bytes_reader(b""))
    assert refused.status == 403
    assert google.hits >= 1
