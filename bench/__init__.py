"""The bridge's benchmark (``python -m bench.run``): the bridge against rclone and a plain copy loop.

Never part of the test suite: timings depend on the machine and on what else runs on it.
"""
