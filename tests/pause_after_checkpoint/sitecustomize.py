"""Put this folder first on PYTHONPATH, with PIPELINE_TEST_PAUSE=<a folder holding the FIFOs
`paused` and `go`>, and a training process pauses right after writing its first checkpoint: it
writes the checkpoint's path to `paused`, then waits until something opens and closes `go`. The
fault tests act on that event (kill it, interrupt it, run a second process beside it), however
fast this machine trains; tests/test_faults.py's Pause is the other end."""

import os

PAUSE = os.environ.get("PIPELINE_TEST_PAUSE")

if PAUSE:
    from pipeline import resume

    _save_state = resume.save_state

    def save_state_then_pause(folder, epoch, state):
        path = _save_state(folder, epoch, state)
        if epoch == 1:
            with open(os.path.join(PAUSE, "paused"), "w") as paused:
                paused.write(f"{path}\n")
            with open(os.path.join(PAUSE, "go")) as go:  # blocks until the test opens it to write
                go.read()
        return path

    resume.save_state = save_state_then_pause
