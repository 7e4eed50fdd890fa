"""A Functions worker process for one timer invocation: configured from its environment, invoked
once, then alive and idle (as the worker stays after an invocation) until it is killed.

Run by tests/test_ingestion.py. With ``HALTIAN_TEST_REFUSE_GET=n`` the n-th S3 GET is refused,
so a file fails; with ``HALTIAN_TEST_STALL_GET=m`` the m-th GET first waits out the time budget,
so the files after it are deferred (the transport's hook, called before each GET).
"""

import os
import sys
import time

from azure.functions.timer import TimerRequest
from botocore.exceptions import EndpointConnectionError

import function_app
from shared.run import Bridge, RunFailed
from shared.settings import Settings

refuse_at = int(os.environ.get("HALTIAN_TEST_REFUSE_GET", "0"))
stall_at = int(os.environ.get("HALTIAN_TEST_STALL_GET", "0"))
gets = []


def hook(method: str, url: str) -> None:
    gets.append(url)
    if len(gets) == refuse_at:
        raise EndpointConnectionError(endpoint_url="http://127.0.0.1 (injected)")
    if len(gets) == stall_at:
        time.sleep(float(os.environ["BRIDGE_TIME_BUDGET_SECONDS"]) + 0.2)


Bridge.from_settings(
    Settings.from_mapping(os.environ)
).source.transport.hook = hook  # the worker's own bridge
try:
    function_app.haltian_bridge.build().get_user_function()(TimerRequest(past_due=False))
except RunFailed:
    pass  # the host would mark the invocation failed
print("invocation returned", flush=True)
sys.stdout.close()
time.sleep(600)
