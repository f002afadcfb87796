"""A pool on Dask distributed: an embedded local cluster, a running one, or yours.

Jobs travel as in every remote pool (see ``remote``): the Dask
worker runs ``run_job`` on two byte strings and only the outcome comes back.
What is Dask's own:

- Futures are collected with ``distributed.as_completed(with_results=True)``,
  which fetches results on the client's event loop as they finish; Dask's
  ``add_done_callback`` would start a callback thread that outlives the run.
- The worker count is the cluster's thread count, asked again at most once a
  second when the scheduler reads ``capacity``, so workers that join mid-run
  are fed (and with ``spare="auto"`` the spare count follows them), and once
  more when a run ends, so what reports the run tells the size it ended with.
- ``submit`` only packs a job; ``wait`` sends all packed jobs with one
  ``Client.map``, one graph update for the scheduler instead of one per task.
- At most once per attempt, whatever the cluster's settings. A worker that
  dies while it holds a task makes the scheduler run the task again on another
  worker, until its ``allowed-failures`` count is exceeded (then it fails it
  with ``KilledWorker``, which becomes ``WorkerCrashError``). So on a cluster
  pexen did not start, ``run_job_once`` notes on the scheduler that the task
  started (``Client.set_metadata`` under the task's own key, which the
  scheduler drops when it forgets the task: one round trip per task) and
  refuses to start it a second time (``StartedBefore``, also a crash): pexen's
  ``retries`` alone decides what runs again, and the cluster's configuration
  is left as it is. Tasks that only waited in the dead worker's queue never
  started, so they run elsewhere. The embedded cluster allows no failure, so
  Dask fails such a task at once and the note is not needed; futures are
  submitted with ``retries=0``.
- Driving a run live: the Dask scheduler says which tasks its workers are
  processing (``Client.processing``); the others are cancelled when dropped.
  A running task cannot be stopped: cancelled with ``force``, it is released
  and abandoned. ``wake`` sets a flag that ``_collect`` looks at between
  waits on ``as_completed``'s condition. Resizing scales the embedded
  cluster: up at once; down by retiring idle workers, and busy ones once
  they are idle.
"""

from __future__ import annotations

import asyncio
import inspect
from time import monotonic
from typing import Any

from pexen.sched._errors import PoolError
from pexen.sched._pools.autoworkers import usable_cpus
from pexen.sched._pools.base import check_count
from pexen.sched._pools.engines import import_distributed
from pexen.sched._pools.remote import Done, RemotePool, run_job

COUNT_INTERVAL = 1.0  # seconds between two questions about the worker count
# spare="auto": spare tasks per worker thread. A Dask round trip (client,
# scheduler, worker and back) takes milliseconds; with short tasks a worker
# needs several queued to stay busy meanwhile (tools/bench_cluster.py).
SPARE_PER_WORKER = 8

# The embedded scheduler fails a task whose worker died at once instead of
# running it again on other workers (which a crashing task would kill too).
# The local cluster pexen starts for itself: a task whose worker dies fails
# at once (no silent retry, so no side effects run twice), and a worker holds
# only the tasks it runs (no queue of its own), so a crash takes no bystander.
EMBEDDED_CONFIG = {
    "distributed.scheduler.allowed-failures": 0,
    "distributed.scheduler.worker-saturation": 1.0,
}


class DaskWorkerPool(RemotePool):
    """Run tasks on a Dask distributed cluster.

    - Neither *address* nor *client*: start a local cluster of ``workers``
      single-threaded worker processes (default: one per CPU this process
      may use) on 127.0.0.1 for each run, and close it when the run ends.
    - *address* (``"tcp://host:8786"``): connect to a running scheduler for
      each run, disconnect at its end.
    - *client*: use your ``distributed.Client``; it stays open.

    The worker count (threads across the cluster) comes from the cluster and
    follows workers that join or leave; ``spare="auto"`` keeps eight spare
    tasks queued per worker thread, which hides the scheduler's round trip
    from short tasks (a lower ``spare`` keeps priorities tighter).
    Workers need pexen and the modules of the tasks installed. A worker that
    dies while running a task yields that task's ``TaskRes`` with
    ``WorkerCrashError``, whatever the cluster's ``allowed-failures``: a task
    runs at most once (on a cluster of yours, at the cost of one round trip
    to the scheduler per task, which notes that it started). Leaving a run early cancels
    the tasks not yet finished; Dask cannot interrupt a running one, so a
    task past its ``timeout`` is reported (``TaskTimeoutError``) only when it
    returns.
    """

    def __init__(
        self,
        address: str | None = None,
        client: Any = None,
        *,
        workers: int | None = None,
        spare: int | str | None = "auto",
    ) -> None:
        self._distributed = import_distributed()
        if address is not None and client is not None:
            raise PoolError("DaskWorkerPool takes address= or client=, not both")
        if workers is not None and (address is not None or client is not None):
            raise PoolError(
                f"workers={workers!r} sizes the embedded local cluster; with "
                f"address= or client= the worker count comes from the cluster"
            )
        if workers is None:
            embedded = address is None and client is None
            workers = usable_cpus() if embedded else 1
        check_count("workers", workers, 1)
        # "auto" (None: the same, as before "auto" existed) keeps a fixed
        # number queued per worker thread, following the cluster's size: a
        # Dask round trip takes milliseconds, whatever the tasks take
        self._auto_spare = spare is None or spare == "auto"
        super().__init__(
            workers,
            SPARE_PER_WORKER * workers if spare is None or spare == "auto" else spare,
        )
        self.crash_types = (self._distributed.KilledWorker, StartedBefore)
        self.address = address
        self._given_client = client
        self._client: Any = None
        self._cluster: Any = None
        self._completed: Any = None  # distributed.as_completed of this run
        self._next_count = 0.0
        self._woken = False  # wake() was called: _collect returns
        self._shrinking = False  # the embedded cluster has workers to retire

    def __repr__(self) -> str:
        if self._given_client is not None:
            where = f"client={self._given_client!r}"
        elif self.address is not None:
            where = f"address={self.address!r}"
        else:
            where = f"workers={self.workers}"
        spare = "'auto'" if self._auto_spare else self.spare
        return f"DaskWorkerPool({where}, spare={spare})"

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` serving the current run, else None."""
        return self._client

    @property
    def capacity(self) -> int:
        if (
            self._client is not None
            and self._cluster is None  # the embedded cluster has the size we set
            and monotonic() >= self._next_count
        ):
            self._count_workers()
        return self.workers + self.spare

    def _count_workers(self) -> None:
        self._next_count = monotonic() + COUNT_INTERVAL
        try:
            threads = sum(self._client.nthreads().values())
        except OSError:  # scheduler unreachable for now: keep the last count
            return
        self._workers = max(threads, 1)
        if self._auto_spare:
            self.spare = SPARE_PER_WORKER * self.workers

    def _start(self) -> None:
        super()._start()
        dist = self._distributed
        if self._given_client is not None:
            self._client = self._given_client
        elif self.address is not None:
            try:
                self._client = dist.Client(self.address, set_as_default=False)
            except OSError as exc:
                raise PoolError(
                    f"cannot connect to the Dask scheduler at {self.address!r}: {exc}"
                ) from exc
        else:
            import dask.config

            with dask.config.set(EMBEDDED_CONFIG):
                self._cluster = dist.LocalCluster(
                    n_workers=self.workers,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=":0",
                )
            self._client = dist.Client(self._cluster, set_as_default=False)
        # the embedded cluster fails a task at its worker's death, unasked
        self.job_runner = run_job if self._cluster is not None else run_job_once
        self._completed = dist.as_completed(
            loop=self._client.loop, with_results=True, raise_errors=False
        )
        self._count_workers()

    def _set_workers(self, workers: int) -> None:
        if self._cluster is None and (
            self.address is not None or self._given_client is not None
        ):
            raise PoolError(
                f"cannot set workers={workers!r}: the worker count of a cluster "
                f"pexen did not start comes from the cluster; scale it there"
            )
        super()._set_workers(workers)
        if self._auto_spare:
            self.spare = SPARE_PER_WORKER * workers

    def _resize(self, workers: int, old: int) -> None:
        cluster = self._cluster
        if cluster is None:
            return
        if workers > len(cluster.worker_spec):
            cluster.scale(workers)
        else:
            self._shrinking = True
            self._retire_idle()

    def _retire_idle(self) -> None:
        """Retire idle workers of the embedded cluster beyond ``workers``."""
        cluster, client = self._cluster, self._client
        excess = len(cluster.worker_spec) - self.workers
        if excess <= 0:
            self._shrinking = False
            return
        busy = {addr for addr, keys in client.processing().items() if keys}
        idle = [
            info["name"]
            for addr, info in cluster.scheduler_info["workers"].items()
            if addr not in busy and info.get("name") in cluster.worker_spec
        ]
        for name in idle[:excess]:
            del cluster.worker_spec[name]
        cluster.scale(len(cluster.worker_spec))
        self._shrinking = len(cluster.worker_spec) > self.workers

    def wake(self) -> None:
        self._woken = True
        completed = self._completed
        if completed is not None:
            condition = completed.thread_condition
            # never block: a signal handler may run this while the thread it
            # interrupted holds the condition; wait() looks again within 0.1 s
            if condition.acquire(blocking=False):
                try:
                    condition.notify_all()
                finally:
                    condition.release()

    def wait(self) -> list[Any]:
        if self._shrinking:
            self._retire_idle()
        return super().wait()

    def _drop(self, futures: list[Any]) -> list[Any]:
        # Dask cancels a running task too: drop only those no worker processes
        if not futures:
            return []
        processing = {
            key for keys in self._client.processing().values() for key in keys
        }
        gone = [future for future in futures if future.key not in processing]
        if gone:
            _call(self._client.cancel, gone)
        return [self._pending.pop(future) for future in gone]

    def _abandon(self, future: Any) -> None:
        super()._abandon(future)
        _call(self._client.cancel, [future])

    _abandon_words = (
        "Dask cannot stop a running task, so it was released: it may run on in "
        "its worker, and what it returns is ignored"
    )

    def _submit_remote(self, blobs: list[tuple[bytes, bytes]]) -> list[Any]:
        task_blobs, data_blobs = zip(*blobs, strict=True)
        return self._client.map(
            self.job_runner, task_blobs, data_blobs, pure=False, retries=0
        )

    def _track(self, futures: list[Any]) -> None:
        self._completed.update(futures)

    def _collect(self) -> list[Done]:
        completed = self._completed
        while not completed.has_ready():
            if self._woken:
                break
            condition = completed.thread_condition
            with condition:  # as as_completed's own __next__ waits
                condition.wait(timeout=0.1)
        self._woken = False
        collected: list[Done] = []
        pending = self._pending
        for future, result in completed.next_batch(block=False):
            if future not in pending:  # dropped or abandoned meanwhile
                continue
            if future.status == "finished":
                collected.append((future, result, None))
            elif isinstance(result, tuple):  # "error": (type, exception, traceback)
                collected.append((future, None, result[1]))
            else:  # "cancelled": the CancelledError itself
                collected.append((future, None, result))
        return collected

    def _stop(self, cancel: bool) -> None:
        if not cancel and self._client is not None:
            # A run that ended reports the cluster's size as it ended, not as
            # last counted (up to a second ago, or when the run started).
            # Not on cancel: that may run on Dask's own event loop, or with
            # the scheduler gone, where asking would block.
            self._count_workers()
        futures = list(self._pending)
        super()._stop(cancel=False)  # Dask futures are cancelled below, if need be
        self._completed = None
        client, self._client = self._client, None
        cluster, self._cluster = self._cluster, None
        try:
            # closing a client of ours releases its tasks; yours stays open
            if cancel and futures and client is self._given_client:
                _call(client.cancel, futures, force=True)
        finally:
            del futures
            if client is not None and client is not self._given_client:
                _call(client.close)
            if cluster is not None:
                _call(cluster.close)


class StartedBefore(Exception):
    """Raised on a Dask worker for a task that Dask starts a second time.

    Dask runs a task again when the worker running it died (or left the
    cluster); pexen counts that as a crash, and a failed attempt.
    """


def run_job_once(
    task_blob: bytes, data_blob: bytes
) -> tuple[bytes | None, bytes | None, float | None]:
    """``run_job`` on a Dask worker, unless this very task started before.

    The worker notes its start on the scheduler, under the task's key (so the
    scheduler drops the note with the task) and its own id, and reads the
    notes there in the same round trip. A worker that takes the task over
    after a death finds the first one's note: the first wrote it, and waited
    for the scheduler to have it, before the task started.
    """
    from distributed import get_client, get_worker

    worker = get_worker()
    key, me = worker.get_current_task(), worker.id
    client = get_client()  # the worker's own, made once per worker

    async def note_and_read() -> Any:
        # on the client's loop these return awaitables instead of blocking
        _, notes = await asyncio.gather(
            client.set_metadata([key, me], worker.address),
            client.get_metadata([key], None),
        )
        return notes

    notes = client.sync(note_and_read)
    before = [where for who, where in (notes or {}).items() if who != me]
    if before:
        raise StartedBefore(
            f"it started on {before[0]}, which left the cluster before its "
            f"outcome came back; Dask started it again on {worker.address}, "
            f"and pexen runs a task at most once per attempt "
            f"(SchedMeta.retries decides whether it runs again)"
        )
    return run_job(task_blob, data_blob)


_scheduled: set[asyncio.Task] = set()  # strong references until they are done


def _call(method: Any, *args: Any, **kwargs: Any) -> None:
    """Call a blocking Dask method, or schedule it when on Dask's event loop.

    A run's generator that the garbage collector finalises may be closed on
    any thread, Dask's event loop among them; there Dask's methods return an
    awaitable instead of blocking, which is started rather than dropped.
    """
    result = method(*args, **kwargs)
    if inspect.isawaitable(result):
        task = asyncio.ensure_future(result)
        _scheduled.add(task)
        task.add_done_callback(_scheduled.discard)
