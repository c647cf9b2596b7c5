"""The progress line pinned with a fake clock (issue 27): the rate over the moving
window after warm-up, the ETA, the bar, when a plain (non-tty) line is printed."""
import io

import pytest

from prtr_tf.training import progress


class _Clock:
    def __init__(self, times):
        self.times = list(times)

    def __call__(self):
        return self.times.pop(0)


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_rate_eta_and_plain_lines():
    # start t=0. update(10)@5 is warm-up (not in the window); (20,15), (30,20),
    # (50,30): window=2 keeps the last 3 points -> rate (50-20)/(30-15) = 2 it/s,
    # ETA (100-50)/2 = 25 s. Rules out a window from the start (50/30), counting the
    # warm-up update, and a maxlen of `window` points.
    clock = _Clock([0, 5, 15, 20, 30, 31, 100, 3730])
    out = io.StringIO()
    p = progress.Progress(100, "epoch 1/3", every=50, stream=out, window=2, warmup=2,
                          clock=clock)
    p.update(10, "a")
    assert p.rate() == 0.0
    p.update(20, "b")
    assert p.rate() == 0.0  # one point only
    p.update(30, "c")
    assert p.rate() == pytest.approx(2.0)
    p.update(50, "d")
    assert p.rate() == pytest.approx(2.0)
    assert out.getvalue() == ("epoch 1/3 [" + "=" * 12 + "." * 12 + "] 50/100 d 2.00 it/s "
                              "ETA 00:25\n")
    p.update(60, "e")  # not printed: not a multiple of 50, 1 s after the last line
    assert p.rate() == pytest.approx(30 / 11)
    assert out.getvalue().count("\n") == 1
    p.update(70, "f")  # 70 s after the last line (> 60): printed
    # window (50,30), (60,31), (70,100): 20 / 70 it/s, ETA 30 / (2/7) = 105 s
    assert out.getvalue().splitlines()[-1] == (
        "epoch 1/3 [" + "=" * 16 + "." * 8 + "] 70/100 f 0.29 it/s ETA 01:45")
    p.update(100, "g")  # final: the total time 3730 s
    last = out.getvalue().splitlines()[-1]
    assert last.startswith("epoch 1/3 [" + "=" * 24 + "] 100/100 g ")
    assert last.endswith(" ETA 00:00 (1:02:10)")


def test_eta_unknown_until_two_points_and_tty_line():
    out = _Tty()
    p = progress.Progress(4, "x", stream=out, clock=_Clock([0, 1, 3, 4]))
    p.update(1)  # warmup=1: this update is the first point
    assert out.getvalue() == "\rx [" + "=" * 6 + "." * 18 + "] 1/4  -.-- it/s ETA --:--\x1b[K"
    p.update(2)
    assert out.getvalue().endswith("] 2/4  0.50 it/s ETA 00:04\x1b[K")
    p.update(4)
    assert out.getvalue().endswith("] 4/4  1.00 it/s ETA 00:00 (00:04)\x1b[K\n")


@pytest.mark.parametrize("seconds, text", [
    (0, "00:00"), (59.4, "00:59"), (59.5, "01:00"), (61, "01:01"), (3599, "59:59"),
    (3600, "1:00:00"), (3661, "1:01:01"), (36000 + 120, "10:02:00"),
    (float("nan"), "--:--"), (float("inf"), "--:--")])
def test_duration(seconds, text):
    assert progress._duration(seconds) == text


def test_defaults_every_50_and_the_60_second_rule():
    # every=50 by default: 49 is not printed, 50 is. A line is also printed when more
    # than 60 s (not 60 s exactly) passed since the last one (the first at t > 60 s
    # after time 0).
    out = io.StringIO()
    p = progress.Progress(200, "e", stream=out, clock=_Clock([0, 1, 2, 62.5, 122.5, 123]))
    p.update(49)
    p.update(50)
    assert [l.split("]")[1].split()[0] for l in out.getvalue().splitlines()] == ["50/200"]
    p.update(51)  # t=62.5: 60.5 s after the last line (t=2) -> printed
    assert out.getvalue().count("\n") == 2
    p.update(52)  # t=122.5: exactly 60 s after t=62.5: not printed
    assert out.getvalue().count("\n") == 2
    p.update(53)  # t=123: 60.5 s
    assert out.getvalue().count("\n") == 3
    out = io.StringIO()
    p = progress.Progress(200, "e", stream=out, clock=_Clock([0, 60.5]))
    p.update(1)  # 60.5 s after time 0
    assert out.getvalue().count("\n") == 1


def test_default_window_is_20_updates():
    # 25 updates: 1..5 at t = 1..5, then 10 s apart (update k at 5 + 10 (k - 5)). The
    # default window (the last 21 points) spans updates 5..25 -> 20 steps in 200 s
    # (a window of 21 would span 4..25: 21 steps in 201 s).
    times = [0] + [1, 2, 3, 4, 5] + [5 + 10 * i for i in range(1, 21)]
    p = progress.Progress(1000, "w", stream=io.StringIO(), clock=_Clock(times))
    for done in range(1, 26):
        p.update(done)
    assert p.rate() == pytest.approx(20 / 200)


def test_window_zero_keeps_two_points_and_a_zero_time_step_has_no_rate():
    p = progress.Progress(100, "w", stream=io.StringIO(), window=0,
                          clock=_Clock([0, 1, 2, 3, 3]))
    p.update(1)
    p.update(2)
    p.update(10)
    assert p.rate() == pytest.approx(8.0)  # (10 - 2) / (3 - 2), not (10 - 1) / 2
    p.update(12)  # the same time as the last point: no rate (not a division by zero)
    assert p.rate() == 0.0


def test_elapsed_time_and_a_single_step_bar():
    out = io.StringIO()
    p = progress.Progress(1, "one", stream=out, clock=_Clock([100, 160]))
    p.update(1)
    assert out.getvalue() == "one [" + "=" * 24 + "] 1/1  -.-- it/s ETA --:-- (01:00)\n"
