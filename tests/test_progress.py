"""The plain-text progress bar: what its line says, and the time left it estimates from runs done and from
the epochs of the runs still going."""
import io

from kdlib import progress
from kdlib.progress import ProgressBar, fmt_seconds


class Clock:
    def __init__(self):
        self.now = 1000.0

    def perf_counter(self):
        return self.now


def _bar(monkeypatch, total=4):
    clock = Clock()
    monkeypatch.setattr(progress, "time", clock)
    return ProgressBar(total, stream=io.StringIO(), width=8), clock


def test_fmt_seconds_switches_units_at_90_s_and_90_min():
    assert [fmt_seconds(s) for s in (-3, 89, 90, 5399, 5400)] == ["0 s", "89 s", "1.5 min", "90.0 min", "1.5 h"]


def test_before_anything_is_done_there_is_no_estimate(monkeypatch):
    bar, clock = _bar(monkeypatch)
    bar.update(running=2)
    clock.now += 60
    assert bar.line() == "[........] 0/4 runs (0 done, 2 running, 0 failed), 0.0/min, 60 s"


def test_the_epochs_of_running_items_show_and_count_towards_the_time_left(monkeypatch):
    bar, clock = _bar(monkeypatch)
    bar.update(done=1, running=2)
    bar.epoch("a", 2, 4)
    bar.epoch("b", 1, 4)
    clock.now += 100
    # 1 + 2/4 + 1/4 = 1.75 of 4 in 100 s: (4 - 1.75) * 100 / 1.75 = 128.6 s left
    assert bar.line() == ("[##......] 1/4 runs (1 done, 2 running (epoch 2/4, 1/4), 0 failed), 0.6/min, 1.7 min, "
                          "about 2.1 min left")


def test_a_long_first_run_gives_an_estimate_from_its_epochs_alone(monkeypatch):
    bar, clock = _bar(monkeypatch, total=3)
    bar.update(running=1)
    bar.epoch("t", 1, 16)
    clock.now += 120  # one epoch of 16 in 2 min: 3 runs take 96 min, 94 (1.6 h) left
    assert bar.line().endswith(" 1 running (epoch 1/16), 0 failed), 0.0/min, 2.0 min, about 1.6 h left")


def test_an_ended_item_leaves_the_line_and_the_estimate(monkeypatch):
    bar, clock = _bar(monkeypatch, total=2)
    bar.epoch("a", 3, 4)
    bar.update(done=1)
    bar.ended("a")
    clock.now += 60
    assert bar.line() == "[####....] 1/2 runs (1 done, 0 running, 0 failed), 1.0/min, 60 s, about 60 s left"
