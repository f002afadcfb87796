"""examples/gui_progress.py, headless (``QT_QPA_PLATFORM=offscreen``): its
buttons are clicked through Qt's test API while a real ProcessWorkerPool run
goes on. Pause holds dispatch (no task is dispatched between the "paused" and
"resumed" events), Resume lets it go on, Cancel ends the run with every task
accounted for, and nothing is left running (the autouse leak check).

Waits poll to a deadline with Qt's ``qWait``, which keeps the GUI's event
loop turning meanwhile, so the events of the run reach the window.
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
try:
    from PySide6 import QtCore, QtTest, QtWidgets
except ImportError as exc:  # only where PySide6 cannot be imported at all
    pytest.skip(f"PySide6 cannot be imported ({exc}); pip install 'pexen[gui]'",
                allow_module_level=True)

from pexen.sched.pool import ProcessWorkerPool

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "gui_progress.py"
DEADLINE = 30.0  # seconds: only to turn a deadlock into a failure


def _load_example():
    spec = importlib.util.spec_from_file_location("gui_progress_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def app():
    return QtWidgets.QApplication.instance() or QtWidgets.QApplication([])


def _click(button) -> None:
    assert button.isEnabled()
    QtTest.QTest.mouseClick(button, QtCore.Qt.MouseButton.LeftButton)


def _wait_for(predicate) -> None:
    """Let the GUI's event loop turn until *predicate* holds (or fail)."""
    deadline = time.monotonic() + DEADLINE
    while not predicate():
        assert time.monotonic() < deadline, "gave up waiting"
        QtTest.QTest.qWait(10)  # processes the GUI's events meanwhile


def test_pause_resume_and_cancel_through_the_buttons(app):
    example = _load_example()
    tasks = [example.make_job(n, 0.05) for n in range(60)]
    window = example.RunWindow(tasks, ProcessWorkerPool(2, spare=1))
    kinds: list[str] = []
    window.sched.observe(lambda event: kinds.append(event.kind))
    ended = []
    window.run_ended.connect(lambda: ended.append(True))
    window.show()
    window.start()
    try:
        _wait_for(lambda: window.finished >= 3)
        _click(window.pause_button)
        _wait_for(lambda: window.state.text().startswith("paused"))
        assert window.resume_button.isEnabled()
        # the tasks in the pool finish; then nothing is handed out any more
        _wait_for(lambda: (lambda st: st.running + st.queued == 0)(
            window.sched.status()))
        held = window.sched.status()
        assert held.paused and held.ready > 0
        _wait_for(lambda: window.running_list.count() == 0)  # the events arrive
        _click(window.resume_button)
        _wait_for(lambda: window.finished > held.done)  # it goes on
        _click(window.cancel_button)
        _wait_for(lambda: bool(ended))
        status = window.sched.status()
        assert window.progress.value() == status.done + status.failed
        assert window.state.text().startswith(f"ended: {status.done} done")
        assert not window.cancel_button.isEnabled()
    finally:
        window.sched.abort("the test ended", force=True)
        window.join()
        window.close()
        window.deleteLater()  # now, not at the interpreter's exit
        QtTest.QTest.qWait(0)
    assert status.total == len(tasks)
    assert status.done + status.failed + status.skipped == status.total
    assert 0 < status.done < len(tasks) and status.skipped > 0
    assert all("cancelled by the user" in why for why in window.sched.skipped.values())
    # nothing is dispatched while paused
    paused = False
    for kind in kinds:
        if kind in ("paused", "resumed"):
            paused = kind == "paused"
        assert not (paused and kind == "dispatched"), kinds
    assert kinds.count("paused") == kinds.count("resumed") == 1
    assert kinds[-1] == "run-ended"
