"""Azure Functions entry (Python v2 programming model). Only wiring: the logic is in shared/.

The host imports this module on every cold start (on Flex Consumption, an hourly timer mostly
meets an instance that has scaled to zero), so it imports nothing but azure.functions: each
function imports what it needs when it is invoked.
"""

import json
import os

import azure.functions as func

app = func.FunctionApp()


@app.timer_trigger(schedule="%BRIDGE_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
def haltian_bridge(timer: func.TimerRequest) -> None:
    """Copies every new Haltian file into the lake (hourly unless BRIDGE_SCHEDULE says otherwise).

    Logs a past-due timer, runs once, logs a one-line summary; raises when files failed so
    the invocation shows as failed and an alert can fire.
    """
    from shared import telemetry
    from shared.timer import run_for_timer

    with telemetry.flushed():  # the worker may be frozen as soon as the invocation returns
        run_for_timer(os.environ, past_due=timer.past_due)


@app.route(route="backfill", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def backfill(req: func.HttpRequest) -> func.HttpResponse:
    """Queues a backfill: JSON body ``{"from": "YYYY-MM", "to": "YYYY-MM", "datasets": [...]}``, all optional."""
    from shared import telemetry
    from shared.backfill.http import backfill_request

    with telemetry.flushed():
        status, document = backfill_request(os.environ, req.get_body())
    return func.HttpResponse(json.dumps(document), status_code=status, mimetype="application/json")


@app.queue_trigger(arg_name="message", queue_name="%BRIDGE_BACKFILL_QUEUE%", connection="BridgeQueue")
def backfill_partition(message: func.QueueMessage) -> None:
    """Copies one (dataset, month) partition; raising returns the message for a retry."""
    from shared import telemetry
    from shared.backfill.queue import run_for_queue

    with telemetry.flushed():
        run_for_queue(os.environ, message.get_body().decode())
