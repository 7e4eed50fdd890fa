"""moto's S3 behind a server that keeps connections open: ``python -m bench.s3_server PORT``.

``python -m moto.server`` runs on werkzeug's development server, which ends every connection
after one answer (``Connection: close``). S3 keeps them open (HTTP/1.1 keep-alive), so through
the latency proxy every request to moto would pay a new connection's round trip that it does
not pay in the cloud, and both tools compared at latency would look slower than they are. The
same moto application, served by waitress, keeps them open as S3 does.
"""

from __future__ import annotations

import os
import sys

import waitress
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app


def main(argv: list[str]) -> None:
    port = int(argv[0])
    os.environ.setdefault("MOTO_PORT", str(port))
    application = DomainDispatcherApplication(create_backend_app)
    # 32 threads: rclone's transfers and checkers and the bridge's pools all fit without queueing.
    waitress.serve(
        application,
        host="127.0.0.1",
        port=port,
        threads=32,
        connection_limit=256,
        channel_timeout=120,
        _quiet=True,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
