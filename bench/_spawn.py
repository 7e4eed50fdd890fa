"""Runs one command and records its own peak RSS and CPU: ``python -S _spawn.py USAGE.json -- CMD...``.

Why a wrapper: a process started straight from the benchmark inherits, in its ``ru_maxrss``, the
resident size of the process that started it (Linux carries the old address space's high-water
mark across exec, and Python starts children with vfork). Started from this small process
instead, the command's ``ru_maxrss`` (read with wait4, the per-child form of
``getrusage(RUSAGE_CHILDREN)``) is its own, give or take this wrapper's few MB.

Standard library only, and run with ``-S``, so the wrapper stays small.
"""

import json
import os
import signal
import sys


def main() -> int:
    usage_path, separator, command = sys.argv[1], sys.argv[2], sys.argv[3:]
    if separator != "--" or not command:
        sys.stderr.write(__doc__)
        return 2
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(command[0], command)
        finally:
            os._exit(127)

    def forward(signum, _frame):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    _, status, usage = os.wait4(pid, 0)
    with open(usage_path, "w") as out:
        json.dump(
            {"maxrss_kib": usage.ru_maxrss, "cpu_user_s": usage.ru_utime, "cpu_sys_s": usage.ru_stime}, out
        )
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
