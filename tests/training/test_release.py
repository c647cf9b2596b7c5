"""`prtr_tf.training.trainer.release_in_background`: the trainer drops each epoch's
input iterator in a thread of its own, because a distributed iterator's destructor
waits for its threads (tens of seconds at every epoch end of the demo's trainings)."""
import threading

from prtr_tf.training.trainer import release_in_background


class _Slow:
    """An object whose destructor blocks until ``go`` is set, recording its thread."""

    def __init__(self, go, seen):
        self.go, self.seen = go, seen

    def __del__(self):
        self.seen.append(threading.current_thread().name)
        self.go.wait(30)
        self.seen.append("done")


def test_the_destructor_runs_in_another_thread_and_the_caller_goes_on():
    go, seen = threading.Event(), []
    held = [_Slow(go, seen)]
    thread = release_in_background(held)
    thread.join(0.5)                     # the destructor has started and waits for go
    assert thread.is_alive() and seen == ["prtr-release"]
    assert held == []                    # the caller's list no longer holds it
    go.set()
    thread.join(10)
    assert not thread.is_alive() and seen == ["prtr-release", "done"]
    assert thread.daemon                 # an exiting process does not wait for it
