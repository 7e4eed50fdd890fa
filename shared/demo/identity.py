"""A local managed-identity endpoint, speaking the protocol Azure Functions and App Service give an app.

The host sets ``IDENTITY_ENDPOINT`` (an http URL on localhost) and ``IDENTITY_HEADER`` (a secret
the caller echoes in ``X-IDENTITY-HEADER``); the app asks
``GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=...&client_id=...`` and gets JSON with
``access_token``, ``expires_on`` (epoch seconds, as a string), ``resource`` and ``token_type``.
This server answers that way, so the unmodified ``DefaultAzureCredential`` path (and delta-rs'
own managed-identity client) runs locally. It checks what the real one checks: the secret
header, the user-assigned client id, and that a resource was asked for. Tokens are JWTs the
way Entra issues them for Azure Storage (``iss`` ``https://sts.windows.net/TENANT/``, ``aud``
the resource, ``iat``/``nbf``/``exp``); Azurite in ``--oauth basic`` mode reads them without
checking the signature, which is why the signature here is a placeholder.

Used by the tests' Entra rig and by ``make demo`` nowhere else; nothing in ``shared`` imports it.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

TENANT_ID = "72f988bf-0000-4000-8000-000000000001"


def _b64(document: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(document, separators=(",", ":")).encode()).decode().rstrip("=")


@dataclass
class Issued:
    """One token handed out: to whom, for what, valid until when (``exp`` in the token itself)."""

    client_id: str
    resource: str
    token: str
    exp: int
    caller: str


@dataclass
class IdentityEndpoint:
    """The endpoint, on a loopback port in a thread. ``lifetime`` is every token's validity in seconds."""

    client_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    principal_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    lifetime: int = 60
    header_secret: str = field(default_factory=lambda: secrets.token_hex(16))
    issued: list[Issued] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    #: Tokens still to hand out already expired by their ``exp`` claim, while ``expires_on`` says
    #: they are good: what a client holds when its clock is behind, or when a token was revoked.
    stale_next: int = 0
    _server: ThreadingHTTPServer | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        assert self._server is not None
        # A host name, as the Functions host gives it, so NO_PROXY=localhost keeps it off a proxy.
        return f"http://localhost:{self._server.server_address[1]}/msi/token"

    def environ(self) -> dict[str, str]:
        """What the Functions host sets for an app with this user-assigned identity."""
        return {
            "IDENTITY_ENDPOINT": self.url,
            "IDENTITY_HEADER": self.header_secret,
            "AZURE_CLIENT_ID": self.client_id,
        }

    def tokens_for(self, resource: str) -> list[Issued]:
        return [i for i in self.issued if i.resource == resource]

    def token(self, resource: str, *, exp: int | None = None) -> tuple[str, int]:
        now = int(time.time())
        exp = exp if exp is not None else now + self.lifetime
        claims = {
            "aud": resource,
            "iss": f"https://sts.windows.net/{TENANT_ID}/",
            "iat": now - 1,
            "nbf": now - 1,
            "exp": exp,
            "appid": self.client_id,
            "oid": self.principal_id,
            "sub": self.principal_id,
            "tid": TENANT_ID,
            "idtyp": "app",
            "ver": "1.0",
        }
        return f"{_b64({'typ': 'JWT', 'alg': 'RS256'})}.{_b64(claims)}.{_b64({'local': 'unsigned'})}", exp

    def start(self) -> IdentityEndpoint:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                caller = self.headers.get("User-Agent", "")
                problem = None
                if parts.path != "/msi/token":
                    problem = (404, "no such path")
                elif self.headers.get("X-IDENTITY-HEADER") != endpoint.header_secret:
                    problem = (401, "X-IDENTITY-HEADER missing or wrong")
                elif query.get("api-version") != "2019-08-01":
                    problem = (400, "api-version must be 2019-08-01")
                elif not query.get("resource"):
                    problem = (400, "resource is required")
                elif query.get("client_id") != endpoint.client_id:
                    problem = (400, f"no user-assigned identity with client id {query.get('client_id')}")
                if problem:
                    endpoint.refused.append(problem[1])
                    return self._reply(
                        problem[0], {"error": "invalid_request", "error_description": problem[1]}
                    )
                resource = query["resource"]
                stale = endpoint.stale_next > 0
                if stale:
                    endpoint.stale_next -= 1
                token, exp = endpoint.token(resource, exp=int(time.time()) - 600 if stale else None)
                endpoint.issued.append(Issued(query["client_id"], resource, token, exp, caller))
                expires_on = int(time.time()) + endpoint.lifetime
                self._reply(
                    200,
                    {
                        "access_token": token,
                        "expires_on": str(expires_on),
                        "resource": resource,
                        "token_type": "Bearer",
                        "client_id": endpoint.client_id,
                    },
                )

            def _reply(self, status: int, document: dict) -> None:
                body = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="identity-endpoint", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
