"""`mlp-serve --workers N`: N single-process servers on the same ports (each binds with SO_REUSEPORT, so
the kernel spreads the connections), supervised by this process; torch-free.

The supervisor passes SIGTERM and SIGINT on to every worker (each in a session of its own, so a
terminal's Ctrl-C reaches them once, through here), waits for all, and returns 0 when every worker
exited 0 or was ended by the signal it passed on while still loading its model. A worker that exits
on its own ends the others: the supervisor does not run on at reduced capacity without saying so.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys


def run_workers(command: list[str], workers: int) -> int:
    """Run `command` `workers` times; the exit code of the first worker that failed, else 0."""
    forwarded: list[int] = []
    running: dict[int, subprocess.Popen] = {}  # pid -> worker, until os.wait reports its end

    def forward(sig: int, frame) -> None:
        forwarded.append(sig)
        for child in running.values():
            child.send_signal(sig)

    for sig in (signal.SIGINT, signal.SIGTERM):  # before any worker exists: no window without them
        signal.signal(sig, forward)
    for _ in range(workers):
        child = subprocess.Popen(command, start_new_session=True)
        running[child.pid] = child
    failed = 0
    while running:
        pid, status = os.wait()  # only here are workers reaped, so `running` is always exact
        if running.pop(pid, None) is None:
            continue
        code = os.waitstatus_to_exitcode(status)
        if code != 0 and -code not in forwarded and not failed:
            failed = code
        if not forwarded:  # a worker ended unasked: stop the others rather than serve on with fewer
            print(f"mlp-serve: worker {pid} exited with {code}; stopping the others", file=sys.stderr)
            forward(signal.SIGTERM, None)
    return failed
