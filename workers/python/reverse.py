#!/usr/bin/env python3
"""reverse: a stdio worker serving job `reverse`, which answers the workload
with its bytes in reverse order. The Python counterpart of the Rust
`reverse-worker` (see workers/Bench/PyReverse.toml) and the smallest example
of gearman_driver_worker."""

import os
import sys

# Python puts the script's folder on sys.path itself, except under -I or -P.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from gearman_driver_worker import Worker  # noqa: E402

worker = Worker()


@worker.job("reverse")
def reverse(job):
    return job.workload[::-1]


if __name__ == "__main__":
    worker.run()
