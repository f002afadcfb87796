"""A Qt window driving a pexen run: a progress bar, the tasks running now, and
Pause, Resume and Cancel buttons (``pip install 'pexen[gui]'``).

    python examples/gui_progress.py [TASKS] [WORKERS]

The run goes on in a thread of its own, since ``Sched.run()`` blocks while
it waits for tasks; what happens reaches the window through one observer
(``Sched.observe``), which puts each event in a queue that a timer of the
GUI thread empties (a thread that is not Qt's touches no widget, and emits
no Qt signal). The buttons only call ``Sched.pause()``, ``resume()`` and
``abort()``, which are safe from any thread. The tasks run in a
``ProcessWorkerPool``: Cancel stops the running ones at once (their worker
processes are killed).
"""

from __future__ import annotations

import random
import sys
import threading
import time
from queue import Empty, SimpleQueue
from typing import Any

from PySide6 import QtCore, QtWidgets

from pexen.sched import Event, Sched
from pexen.sched.pool import ProcessWorkerPool


def make_job(number: int, seconds: float):
    """A task that works for *seconds* (a closure: it travels by value)."""

    def job() -> int:
        time.sleep(seconds)  # stands for real work
        return number

    job.__name__ = job.__qualname__ = f"job {number:02d}"
    return job


class RunWindow(QtWidgets.QWidget):
    """The window of one run of *tasks* on *pool*."""

    run_ended = QtCore.Signal()

    def __init__(self, tasks: list[Any], pool: ProcessWorkerPool) -> None:
        super().__init__()
        self.setWindowTitle("pexen run")
        self.sched = Sched(tasks)
        self.pool = pool
        self.total = len(tasks)
        self.finished = 0
        self.progress = QtWidgets.QProgressBar()
        self.progress.setRange(0, self.total)
        self.state = QtWidgets.QLabel("starting")
        self.running_list = QtWidgets.QListWidget()
        self.pause_button = QtWidgets.QPushButton("Pause")
        self.resume_button = QtWidgets.QPushButton("Resume")
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.resume_button.setEnabled(False)
        self.pause_button.clicked.connect(self.sched.pause)
        self.resume_button.clicked.connect(self.sched.resume)
        self.cancel_button.clicked.connect(
            lambda: self.sched.abort("cancelled by the user", force=True)
        )
        buttons = QtWidgets.QHBoxLayout()
        for button in (self.pause_button, self.resume_button, self.cancel_button):
            buttons.addWidget(button)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(self.progress)
        layout.addWidget(self.state)
        layout.addWidget(QtWidgets.QLabel("running:"))
        layout.addWidget(self.running_list)
        layout.addLayout(buttons)
        # observers run in the thread of the run: they only queue the events,
        # which the GUI thread takes on a timer and shows (on_event)
        self._events: SimpleQueue[Event] = SimpleQueue()
        self.sched.observe(self._events.put)
        self._timer = QtCore.QTimer(self)
        self._timer.timeout.connect(self._show_events)
        self._timer.start(20)  # milliseconds
        self._thread = threading.Thread(target=self._drive, name="pexen-run")

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        self._thread.join()

    def _drive(self) -> None:
        for _res in self.sched.run(self.pool):
            pass  # each result reaches the window as a "finished" event

    def _show_events(self) -> None:
        while True:
            try:
                event = self._events.get_nowait()
            except Empty:
                return
            self.on_event(event)

    def on_event(self, event: Event) -> None:
        kind = event.kind
        if kind == "started":
            self.running_list.addItem(event.name)
        elif kind in ("finished", "skipped"):
            for item in self.running_list.findItems(event.name,
                                                    QtCore.Qt.MatchFlag.MatchExactly):
                self.running_list.takeItem(self.running_list.row(item))
            if kind == "finished":
                self.finished += 1
                self.progress.setValue(self.finished)
        elif kind == "paused":
            self.state.setText("paused: the running tasks finish, no new one starts")
            self.pause_button.setEnabled(False)
            self.resume_button.setEnabled(True)
        elif kind == "resumed":
            self.state.setText("running")
            self.pause_button.setEnabled(True)
            self.resume_button.setEnabled(False)
        elif kind == "run-started":
            self.state.setText("running")
        elif kind == "aborting":
            self.state.setText(f"cancelling ({event.reason})")
        elif kind == "run-ended":
            status = event.status
            self.state.setText(
                f"ended: {status.done} done, {status.failed} failed, "
                f"{status.skipped} skipped"
            )
            for button in (self.pause_button, self.resume_button, self.cancel_button):
                button.setEnabled(False)
            self._timer.stop()
            self.run_ended.emit()


def main(argv: list[str]) -> int:
    n_tasks = int(argv[1]) if len(argv) > 1 else 40
    workers = int(argv[2]) if len(argv) > 2 else 2
    rng = random.Random(1)
    tasks = [make_job(n, rng.uniform(0.2, 1.0)) for n in range(n_tasks)]
    app = QtWidgets.QApplication(argv)
    window = RunWindow(tasks, ProcessWorkerPool(workers))
    window.resize(420, 360)
    window.show()
    window.start()
    status = app.exec()
    window.sched.abort("the window was closed", force=True)
    window.join()
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
