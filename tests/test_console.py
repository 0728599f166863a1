"""Progress a person can follow: a bar on a terminal, dated lines with a rate and an ETA off one (nohup, a scheduler)."""
import io
import logging
import re

import pytest

from gan_colorizer.console import Progress, duration

DATED = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def logged(caplog):
    """What was logged so far, as a function: caplog.messages is a new list at each call."""
    with caplog.at_level(logging.INFO, logger="gan_colorizer"):
        yield lambda: caplog.messages


def test_off_a_terminal_progress_is_a_dated_line_every_interval_with_rate_and_eta(logged, capsys):
    clock = Clock()
    progress = Progress(100, "evaluate", "img", seconds=30, clock=clock)
    for _ in range(10):  # 10 images in 20 s: under the interval, no line
        clock.now += 2
        progress.update()
    assert logged() == []
    clock.now += 10  # 30 s since the start
    progress.update(5)
    clock.now += 45  # 20 in 75 s: under the interval again
    progress.update(5)
    progress.close()
    messages = logged()
    assert len(messages) == 2 and all(DATED.match(m) for m in messages)
    assert messages[0].endswith("evaluate 15/100 img, 0.5 img/s, ETA 0:02:50")  # 15 in 30 s: 85 left at 0.5/s
    assert messages[1].endswith("evaluate 20/100 img, 0.267 img/s, ETA 0:05:00")  # where it stopped, at the end
    assert "evaluate:" not in capsys.readouterr().err  # no bar redrawn into a log file


def test_a_progress_that_ends_on_its_last_line_does_not_repeat_it(logged):
    clock = Clock()
    progress = Progress(3, "clips", "clip", seconds=10, clock=clock)
    clock.now += 10
    progress.update(3)
    progress.close()
    messages = logged()
    assert len(messages) == 1 and messages[0].endswith("clips 3/3 clip, 0.3 clip/s")  # done: no ETA


def test_on_a_terminal_progress_is_a_bar_and_no_lines(logged, monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    clock = Clock()
    progress = Progress(4, "evaluate", "img", seconds=1, clock=clock)
    for _ in range(4):
        clock.now += 5
        progress.update()
    progress.close()
    assert logged() == [] and "evaluate:" in terminal.getvalue()  # tqdm draws (and clears) its bar there


def test_a_silent_progress_counts_but_shows_nothing(logged, monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    progress = Progress(4, "evaluate", seconds=0, shows=False)
    progress.update(2)
    progress.line()
    progress.close()
    assert logged() == [] and terminal.getvalue() == "" and progress.done == 2


@pytest.mark.parametrize("seconds, text", [(0, "0:00:00"), (59.6, "0:01:00"), (3725, "1:02:05"),
                                           (2 * 86400 + 3725, "2d 1:02:05"), (None, "?"), (float("inf"), "?")])
def test_durations_read_as_hours_minutes_seconds(seconds, text):
    assert duration(seconds) == text


def test_log_lines_go_to_the_streams_of_the_moment_not_those_of_setup(monkeypatch):
    """A process that redirects sys.stdout / sys.stderr after setup_logging (pytest's capture does, per test) gets
    the lines where it now points; a handler bound at setup wrote to the old stream, closed or not."""
    import io
    import logging
    import sys

    from gan_colorizer.console import setup_logging
    setup_logging()
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    logging.getLogger("gan_colorizer").info("an info line")
    logging.getLogger("gan_colorizer").warning("warning: a warning line")
    assert out.getvalue() == "an info line\n" and err.getvalue() == "warning: a warning line\n"
