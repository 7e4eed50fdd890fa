"""What the timer trigger does: one run with settings from the environment, its failures logged
in one line each and counted, and an exception when files or tables are left for the next run
(so the invocation shows failed and an alert can fire)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from shared import logs, telemetry
from shared.model import RunResult
from shared.run import Bridge, RunFailed, run_once
from shared.settings import Settings, SettingsError
from shared.sink.lake_root import LakeUnavailable
from shared.sink.lock import LockLost, RunLocked

log = logging.getLogger(__name__)


def run_for_timer(environ: Mapping[str, str], *, past_due: bool = False) -> RunResult | None:
    """What the timer trigger does: one run with settings from the environment.

    Returns None when another run holds the lock (that is not a failure: the other run does
    the work).

    Raises:
        SettingsError: the app settings are wrong; the message names each one.
        RunFailed: the run finished, but some files or tables failed (the manifest lists them), or it lost
            its lock and stopped (the next run accounts for its files).
    """
    logs.configure()
    telemetry.configure(environ)
    if past_due:
        log.warning("timer is past due: the previous scheduled run was missed or late")
    settings = Settings.from_mapping(environ)
    try:
        bridge = Bridge.from_settings(settings)
        bridge.lake.require_container()
        result = run_once(bridge)
    except RunLocked as err:
        log.warning("%s", err)
        return None
    except LakeUnavailable as err:
        log.error("run not started: %s", err)
        telemetry.record_failed_run()
        raise
    except SettingsError as err:  # S3 refused the key or role, or the region is wrong: one plain line
        log.error("run not started: %s", err)
        telemetry.record_failed_run()
        raise
    except LockLost as err:
        logs.set_run_id(err.run_id)  # what the invocation logs from here on is that run's
        log.error("%s", err)
        telemetry.record_failed_run()
        raise RunFailed(str(err)) from None
    except Exception:
        log.exception("run stopped before it could write its manifest; the next run starts over")
        telemetry.record_failed_run()
        raise
    logs.set_run_id(result.run_id)  # what the invocation logs from here on is that run's
    if result.exit_code:
        log.error(
            "%s; %s lists what failed, and the next run tries it again",
            result.summary(),
            result.manifest_path,
        )
        raise RunFailed(result.summary())
    return result
