"""The local stand-ins, started on loopback ports: moto's S3 server and Azurite (blob).

Used by ``make demo`` and by the tests (started once per test session). Both are real
servers spoken to over HTTP; nothing here patches the SDKs.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]
AZURITE_BIN = PROJECT_ROOT / "dev" / "azurite" / "node_modules" / ".bin" / "azurite-blob"

# The documented, public development account of the Azure Storage emulators.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
# moto accepts any keys; these are recognisably fake.
FAKE_AWS_KEY_ID = "AKIAFAKEFAKEFAKEFAKE"
FAKE_AWS_SECRET = "fake-secret-for-local-moto-only"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(
    url: str, process: subprocess.Popen, name: str, timeout: float = 60.0, ca_file: str | None = None
) -> None:
    deadline = time.monotonic() + timeout
    context = ssl.create_default_context(cafile=ca_file) if ca_file else None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with code {process.returncode} while starting")
        try:
            urllib.request.urlopen(url, timeout=1, context=context)  # noqa: S310 - loopback only
            return
        except urllib.error.HTTPError:
            return  # any HTTP answer means the server is up
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{name} did not answer on {url} within {timeout:.0f} s")


@dataclass
class Server:
    """One server process on a loopback port; :meth:`restart` keeps the port."""

    name: str
    command: list[str]
    port: int
    probe_path: str = "/"
    #: The CA that signed the server's certificate, when it serves HTTPS.
    ca_file: str | None = None
    #: Extra environment variables for the server process.
    environ: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"{'https' if self.ca_file else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> Server:
        env = {**{k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}, **self.environ}
        self.process = subprocess.Popen(
            self.command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        _wait_for(self.url + self.probe_path, self.process, self.name, ca_file=self.ca_file)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, sig)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        self.stop(signal.SIGKILL)

    def restart(self) -> Server:
        self.stop()
        return self.start()


def moto_server(port: int | None = None, *, unauthenticated_actions: int | None = None) -> Server:
    """moto's server. With ``unauthenticated_actions`` it checks every request after that many as
    AWS does: the SigV4 signature against the key's secret, and the caller's IAM policies."""
    port = port or free_port()
    environ = (
        {}
        if unauthenticated_actions is None
        else {"INITIAL_NO_AUTH_ACTION_COUNT": str(unauthenticated_actions)}
    )
    return Server(
        "moto S3 server",
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        port,
        probe_path="/moto-api/",
        environ=environ,
    )


@dataclass(frozen=True)
class Certificates:
    """A private CA and a server certificate it signed for 127.0.0.1 and localhost (PEM files)."""

    ca: Path
    cert: Path
    key: Path


def make_certificates(folder: Path) -> Certificates:
    """A new private CA and a loopback server certificate signed by it, made with openssl."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (
        folder / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem")
    )
    _make_ca(ca_key, ca)
    _make_server_certificate(folder, ca_key, ca, key, csr, cert)
    return Certificates(ca, cert, key)


#: How openssl is run here: a failure raises, its output is not shown.
_QUIET: dict[str, Any] = {"check": True, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}


def _make_ca(ca_key: Path, ca: Path) -> None:
    """The private CA: a self-signed certificate that may sign others, and its key."""
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            str(ca_key),
            "-out",
            str(ca),
            "-subj",
            "/CN=haltian-bridge test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ],
        **_QUIET,
    )


def _make_server_certificate(folder: Path, ca_key: Path, ca: Path, key: Path, csr: Path, cert: Path) -> None:
    """A server key, and its certificate for 127.0.0.1 and localhost signed by the CA."""
    subprocess.run(
        [
            "openssl",
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(csr),
            "-subj",
            "/CN=127.0.0.1",
        ],
        **_QUIET,
    )
    extensions = folder / "server.ext"
    extensions.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"
    )
    subprocess.run(
        [
            "openssl",
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(ca),
            "-CAkey",
            str(ca_key),
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            str(cert),
            "-extfile",
            str(extensions),
        ],
        **_QUIET,
    )


def _entra(certificates: Certificates | None) -> list[str]:
    # Azurite's Entra mode needs HTTPS; Shared Key keeps working beside it (for test setup).
    if certificates is None:
        return []
    return ["--cert", str(certificates.cert), "--key", str(certificates.key), "--oauth", "basic"]


def azurite(
    port: int | None = None, location: Path | None = None, certificates: Certificates | None = None
) -> Server:
    """Azurite's blob service, in memory unless a folder is given to keep its data.

    With ``certificates``: over HTTPS on them, accepting Entra bearer tokens (``--oauth basic``)
    as Azure does when shared keys are off.
    """
    if not AZURITE_BIN.exists() and shutil.which("azurite-blob") is None:
        raise RuntimeError(f"Azurite is not installed at {AZURITE_BIN}: run `make setup`")
    binary = str(AZURITE_BIN) if AZURITE_BIN.exists() else "azurite-blob"
    port = port or free_port()
    storage = ["--location", str(location)] if location else ["--inMemoryPersistence"]
    return Server(
        "Azurite",
        [
            binary,
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            *storage,
            "--skipApiVersionCheck",
            "--loose",
            "--silent",
            *_entra(certificates),
        ],
        port,
        ca_file=str(certificates.ca) if certificates else None,
    )


def azurite_queue(port: int | None = None, certificates: Certificates | None = None) -> Server:
    """Azurite's queue service (for backfills), in memory; over HTTPS and Entra with ``certificates``."""
    binary = AZURITE_BIN.parent / "azurite-queue"
    port = port or free_port()
    return Server(
        "Azurite queue",
        [
            str(binary),
            "--queueHost",
            "127.0.0.1",
            "--queuePort",
            str(port),
            "--inMemoryPersistence",
            "--skipApiVersionCheck",
            "--loose",
            "--silent",
            *_entra(certificates),
        ],
        port,
        ca_file=str(certificates.ca) if certificates else None,
    )


def azurite_queue_connection_string(server: Server) -> str:
    return (
        f"DefaultEndpointsProtocol={server.url.split(':')[0]};AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"QueueEndpoint={server.url}/{AZURITE_ACCOUNT};"
    )


def azurite_connection_string(server: Server) -> str:
    return (
        f"DefaultEndpointsProtocol={server.url.split(':')[0]};AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint={server.url}/{AZURITE_ACCOUNT};"
    )
