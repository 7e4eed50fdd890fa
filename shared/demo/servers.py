"""The local stand-ins, started on loopback ports: moto's S3 server and Azurite (blob).

Used by ``make demo`` and by the tests (started once per test session). Both are real
servers spoken to over HTTP; nothing here patches the SDKs.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

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


def _wait_for(url: str, process: subprocess.Popen, name: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with code {process.returncode} while starting")
        try:
            urllib.request.urlopen(url, timeout=1)  # noqa: S310 - loopback only
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
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
        self.process = subprocess.Popen(
            self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=env, start_new_session=True,
        )
        _wait_for(self.url + self.probe_path, self.process, self.name)
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


def moto_server(port: int | None = None) -> Server:
    port = port or free_port()
    return Server("moto S3 server", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                  port, probe_path="/moto-api/")


def azurite(port: int | None = None, location: Path | None = None) -> Server:
    """Azurite's blob service, in memory unless a folder is given to keep its data."""
    if not AZURITE_BIN.exists() and shutil.which("azurite-blob") is None:
        raise RuntimeError(f"Azurite is not installed at {AZURITE_BIN}: run `make setup`")
    binary = str(AZURITE_BIN) if AZURITE_BIN.exists() else "azurite-blob"
    port = port or free_port()
    storage = ["--location", str(location)] if location else ["--inMemoryPersistence"]
    return Server(
        "Azurite",
        [binary, "--blobHost", "127.0.0.1", "--blobPort", str(port), *storage,
         "--skipApiVersionCheck", "--loose", "--silent"],
        port,
    )


def azurite_queue(port: int | None = None) -> Server:
    """Azurite's queue service (for backfills), in memory."""
    binary = AZURITE_BIN.parent / "azurite-queue"
    port = port or free_port()
    return Server("Azurite queue", [str(binary), "--queueHost", "127.0.0.1", "--queuePort", str(port),
                                    "--inMemoryPersistence", "--skipApiVersionCheck", "--loose", "--silent"], port)


def azurite_queue_connection_string(server: Server) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"QueueEndpoint={server.url}/{AZURITE_ACCOUNT};"
    )


def azurite_connection_string(server: Server) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint={server.url}/{AZURITE_ACCOUNT};"
    )
