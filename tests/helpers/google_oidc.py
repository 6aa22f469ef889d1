"""A local stand-in for Google's token signing: a key that signs RS256 OIDC tokens as
Cloud Tasks and Cloud Scheduler do, and a loopback server that publishes its certificate
in the format of Google's certificates endpoint ({key id: X.509 PEM}).

Only the key and the server are local: the function verifies the tokens with
google-auth's own code (`id_token.verify_token`), pointed at the server by OIDC_CERTS_URL.
"""

from __future__ import annotations

import datetime
import json
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

ISSUER = "https://accounts.google.com"


class SigningKey:
    """An RSA key with a key id, its self-signed certificate, and tokens signed by it."""

    def __init__(self, key_id: str):
        self.key_id = key_id
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = self._key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())
        self._signer = crypt.RSASigner.from_string(pem, key_id=key_id)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, key_id)])
        now = datetime.datetime.now(datetime.timezone.utc)
        certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                       .public_key(self._key.public_key()).serial_number(x509.random_serial_number())
                       .not_valid_before(now - datetime.timedelta(days=1))
                       .not_valid_after(now + datetime.timedelta(days=2))
                       .sign(self._key, hashes.SHA256()))
        self.certificate = certificate.public_bytes(serialization.Encoding.PEM).decode()

    def token(self, email: str, audience: str, *, issuer: str = ISSUER, email_verified: bool = True,
              issued: float | None = None, lifetime: float = 3600, key_id: str | None = None) -> str:
        """An OIDC token as Google mints it for a service account (the claims Cloud Tasks' carry)."""
        issued = time.time() if issued is None else issued
        claims = {"iss": issuer, "aud": audience, "azp": "1234567890", "sub": "1234567890",
                  "email": email, "email_verified": email_verified,
                  "iat": int(issued), "exp": int(issued + lifetime)}
        return jwt.encode(self._signer, claims, key_id=key_id or self.key_id).decode()


class CertificateServer:
    """Serves {key id: certificate} of `keys` on loopback, as Google's certificates endpoint; counts the GETs.
    `failures`: how many of the next GETs are answered 503 instead."""

    def __init__(self, *keys: SigningKey):
        self.keys = list(keys)
        self.hits = 0
        self.failures = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                with server._lock:
                    server.hits += 1
                    failing, server.failures = server.failures > 0, max(0, server.failures - 1)
                if failing:
                    self.send_error(503)
                    return
                body = json.dumps({key.key_id: key.certificate for key in server.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._http.server_port}/oauth2/v1/certs"

    @contextmanager
    def running(self):
        thread = threading.Thread(target=self._http.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._http.shutdown()
            self._http.server_close()
