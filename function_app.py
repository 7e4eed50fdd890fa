"""Azure Functions entry (Python v2 programming model). Only wiring: the logic is in shared/."""

import os

import azure.functions as func

from shared.run import run_for_timer

app = func.FunctionApp()


@app.timer_trigger(schedule="%BRIDGE_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
def haltian_bridge(timer: func.TimerRequest) -> None:
    """Copies every new Haltian file into the lake (hourly unless BRIDGE_SCHEDULE says otherwise).

    Logs a past-due timer, runs once, logs a one-line summary; raises when files failed so
    the invocation shows as failed and an alert can fire.
    """
    run_for_timer(os.environ, past_due=timer.past_due)
