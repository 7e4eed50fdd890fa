"""The session moto's credentials, shared by conftest.py and the test modules.

(conftest.py is imported by pytest as its own module, so state kept there would not be the same
object a test module sees when it imports ``tests.conftest``.)
"""

from __future__ import annotations

import urllib3

from shared.demo import servers

#: The administrator's key on the session's moto (set when it starts): what the tests sign with.
AWS_KEY: dict[str, str] = {}


def allow_unsigned(server: servers.Server, requests: int) -> None:
    """Lets the next ``requests`` to an authenticating moto through without checking them, for what
    moto cannot check but AWS does: unsigned STS web-identity calls and presigned URLs (moto
    answers 500 to both). Authentication is on again after them."""
    urllib3.request("POST", f"{server.url}/moto-api/reset-auth", body=str(requests).encode())


def aws_secrets() -> tuple[str, ...]:
    """The AWS secrets the suite signs with, for the scans that nothing leaked them."""
    return tuple(s for s in (servers.FAKE_AWS_SECRET, AWS_KEY.get("SecretAccessKey")) if s)
