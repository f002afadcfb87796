"""A pool of named threads in this process."""

from __future__ import annotations

import itertools
import threading
from queue import Empty, SimpleQueue

from pexen.sched._calling import execute
from pexen.sched._pool_base import Job, Outcome, WorkerPool

_pool_ids = itertools.count(1)


def _work(jobs: SimpleQueue, outcomes: SimpleQueue) -> None:
    """Worker thread: run jobs until the ``None`` sentinel arrives."""
    get, put = jobs.get, outcomes.put
    while (job := get()) is not None:
        put(execute(job))


class ThreadWorkerPool(WorkerPool):
    """Run tasks in threads of this process (shared memory, bound by the GIL).

    Threads are started for each run and joined at its end, named
    ``pexen-worker-N``. A running thread cannot be stopped: when the run ends
    early, queued tasks are dropped and running ones are waited for.
    """

    def __init__(self, workers: int = 1, spare: int = 1) -> None:
        super().__init__(workers, spare)
        self._threads: list[threading.Thread] = []
        self._jobs: SimpleQueue = SimpleQueue()
        self._outcomes: SimpleQueue = SimpleQueue()

    def submit(self, job: Job) -> None:
        self._jobs.put(job)

    def wait(self) -> list[Outcome]:
        outcomes = self._outcomes
        ready = [outcomes.get()]
        while not outcomes.empty():
            ready.append(outcomes.get())
        return ready

    def _start(self) -> None:
        self._jobs, self._outcomes = SimpleQueue(), SimpleQueue()
        pool_id = next(_pool_ids)
        self._threads = [
            threading.Thread(
                target=_work,
                args=(self._jobs, self._outcomes),
                name=f"pexen-worker-{pool_id}.{n}",
                daemon=True,
            )
            for n in range(1, self.workers + 1)
        ]
        for thread in self._threads:
            thread.start()

    def _stop(self, cancel: bool) -> None:
        if cancel:
            try:
                while True:
                    self._jobs.get_nowait()
            except Empty:
                pass
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join()
        self._threads = []
