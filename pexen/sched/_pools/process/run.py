"""One run of a ``ProcessWorkerPool``: its workers, its jobs and their fate.

A :class:`ProcessRun` is made when the pool starts a run and dropped when it
stops, so no state survives from one run to the next. It runs in the
scheduler's thread only (the relay thread just moves bytes): ``submit``
queues a job, ``wait`` dispatches, polls and collects, ``stop`` shuts the
workers down. Its parts, in the order of a job's life: dispatch (``_wire``,
``_dispatch``, ``_balance``, ``_rebalance``), results (``_poll``,
``_read_results``, ``_on_result``), faults (``_check_deadlines``,
``_on_death``), driving the run live (``cancel``, ``drop_queued``,
resizing), shutdown (``stop``).

Only ``wake`` (a byte down a self-pipe ``wait`` polls, written under a lock
taken without blocking, so the pipe is never written once closed) and
``running`` (the workers' slots) are called from other threads.

Taking jobs back (``_take_back``): the parent reads the tickets a worker
has not taken (see ``wire``); the jobs they are for will not start there,
which the worker learns when it looks for its next ticket. That moves the
jobs held behind a long task to an idle worker (``_rebalance``), and drops
queued jobs at once.

Driving the run live: a job still in the backlog, or one a worker holds but
has not started (taken back), is dropped at once. A running one is stopped
by killing its worker (``spawn.kill_worker``: it, and every process its tasks
left running, wherever it moved), which is replaced, and its jobs not
started go back to the backlog; if it was about to start (its
ticket taken), the next look at the slots (``_check_cancels``) kills it once
it has. Fewer workers: those beyond the count are *retiring*: they get no
more jobs and are told to STOP once idle, idle ones first.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import pickle
import select
import signal
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from pexen.sched._errors import (
    PoolError,
    TaskTimeoutError,
    TransportError,
    WorkerCrashError,
)
from pexen.sched._naming import task_name
from pexen.sched._pools.base import (
    AutoSpare,
    Job,
    Outcome,
    Running,
    cancelled_error,
    raised,
    sigint_unblocked,
    timeout_error,
    timeout_grace,
)
from pexen.sched._pools.process import wire
from pexen.sched._pools.process.output import Emitter, Relay
from pexen.sched._pools.process.spawn import (
    KILL_WAIT,
    WorkerProc,
    await_exit,
    describe_exit,
    kill_leftovers,
    kill_worker,
    log_levels,
    preload_in_forkserver,
    scope_prefix,
    signal_group,
    start_worker,
)
from pexen.sched._pools.transport import (
    PROTOCOL,
    Definitions,
    dumps_value,
    loads,
    loads_excinfo,
    loads_value,
)

if TYPE_CHECKING:
    from pexen.sched._pools.process.pool import ProcessWorkerPool

_MAX_POLL_MS = 3_600_000  # an hour: poll() cannot wait for a far deadline
_READ_SIZE = 1 << 16
STOP_GRACE = 5.0  # seconds an idle worker gets to exit after STOP
FINALIZE_GRACE = 60.0  # the same, when the pool has a finalizer to run
THREAD_WAIT = 30.0  # seconds more, at the end of a run, for threads tasks left
CANCEL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL on cancel
UNSTARTED_POLL = 0.05  # seconds between looks at a timed job not yet started
START_TIMEOUT = 60.0  # seconds a new worker may take to say READY
# a task that has run this long is long (what spare="auto" keeps queued per
# worker is about this much work): what waits behind it may move elsewhere
STEAL_AFTER = AutoSpare.BUDGET

_new_tuple = tuple.__new__  # a record from a plain tuple, without a Python call


class ProcessRun:
    """The state of one run of *pool*: workers, backlog, jobs, output."""

    def __init__(self, pool: ProcessWorkerPool) -> None:
        self.pool = pool
        self.workers: list[WorkerProc] = []
        self.fd2role: dict[int, tuple[WorkerProc | None, str]] = {}
        self.poller = select.poll()
        self.backlog: deque[int] = deque()  # keys submitted, not yet sent
        self.jobs: dict[int, Job] = {}  # submitted, not finished
        self.key2task: dict[int, Any] = {}  # every job's task, to name log records
        self.wired: dict[int, wire.WireJob] = {}  # key -> as sent (pickled once)
        self.definitions = Definitions()  # what tasks carry by value, pickled once
        self.needs: dict[int, tuple[int, ...]] = {}  # key -> definitions it needs
        self.sent_at: dict[int, float] = {}  # key -> when it went to a worker
        self.outcomes: list[Outcome] = []
        self.n_started = 0
        self.n_unblamed = 0
        self.broken: str | None = None  # why the pool gave up, if it did
        self.hooks = _dumps_hooks(pool)  # first: it may refuse, leaving nothing
        self.scope_prefix = scope_prefix()  # of the ids its workers' processes carry
        self.log_levels = log_levels()
        preload_in_forkserver(pool.mp_context)
        self.emitter = Emitter(self._task_name_of)
        self.relay = Relay(f"pexen-relay-{pool.pool_id}")
        self.relay.start()
        self._watch(self.relay.wake_fd, None, "wake")
        # driving the run live
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.wake_lock = threading.Lock()  # wake() never writes a closed fd
        self._watch(self.wake_r, None, "woken")
        self.woken = False
        self.cancelling: dict[int, WorkerProc] = {}  # force-cancelled, not started
        self.cancel_kills: set[int] = set()  # keys whose worker we killed to stop
        self.n_retiring = 0

    def _task_name_of(self, key: Any) -> str | None:
        # a record may be emitted after its job's result: look in key2task
        task = self.key2task.get(key)
        return None if task is None else task_name(task)

    # -- the pool interface ----------------------------------------------------

    def submit(self, job: Job) -> None:
        self.jobs[job.key] = job
        self.key2task[job.key] = job.task
        self.backlog.append(job.key)

    def wait(self) -> list[Outcome]:
        if not self.jobs and not self.outcomes:
            raise PoolError(f"{self.pool!r}: wait() with no job in flight")
        relay = self.relay
        if relay.has_news:  # what came while the caller held a result
            self.emitter.emit(relay.take())
        self._dispatch(final=False)
        while not self.outcomes:
            timeout = self._check_deadlines()
            if not self.workers:  # none could start: try again shortly
                timeout = 0.1
            if self.cancelling:
                timeout = self._check_cancels(timeout)
            if self.n_retiring or len(self.workers) > self.pool.workers:
                self._retire()
            auto = self.pool.auto_workers
            if auto is not None:
                timeout = self._auto_resize(auto, timeout)
            if not self.backlog:  # a worker may be idle while others hold jobs
                look = self._rebalance(final=False)
                if look is not None:
                    timeout = look if timeout is None else min(timeout, look)
            self._poll(timeout)
            if self.woken:
                self.woken = False
                break
            self._dispatch(final=False)
        self._dispatch(final=True)
        if not self.backlog:
            self._rebalance(final=True)
        # what a task printed or logged comes before its result
        if relay.sync() or relay.has_news or self.emitter.partial:
            self.emitter.emit(relay.take(), flush=True)
        outcomes, self.outcomes = self.outcomes, []
        return outcomes

    def _finish(
        self,
        key: int,
        shared: Any,
        ret: Any,
        excinfo: Any,
        started: float | None = None,
        duration: float | None = None,
        worker: str | None = None,
    ) -> None:
        """Record how job *key* ended; *shared* None: the dict it was sent with."""
        job = self.jobs.pop(key)
        self.wired.pop(key, None)
        self.sent_at.pop(key, None)
        self.needs.pop(key, None)
        if shared is None:
            shared = job.shared
        self.outcomes.append(
            _new_tuple(Outcome, (key, shared, ret, excinfo, started, duration, worker))
        )

    # -- workers ---------------------------------------------------------------

    def _watch(self, fd: int, worker: WorkerProc | None, role: str) -> None:
        self.fd2role[fd] = (worker, role)
        events = select.POLLOUT if role == "job" else select.POLLIN
        self.poller.register(fd, events)

    def _unwatch(self, fd: int) -> None:
        if self.fd2role.pop(fd, None) is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.poller.unregister(fd)

    def _start_worker(self) -> WorkerProc:
        self.n_started += 1
        prefix = self.scope_prefix
        worker = start_worker(
            self.pool.mp_context,
            f"pexen-worker-{self.pool.pool_id}.{self.n_started}",
            self.n_started,
            self.log_levels,
            self.relay,
            self.hooks,
            None if prefix is None else f"{prefix}{self.n_started}",
        )
        self._watch(worker.result_fd, worker, "result")
        self._watch(worker.sentinel, worker, "sentinel")
        self.workers.append(worker)
        return worker

    def _send(self, worker: WorkerProc, payload: bytes) -> None:
        worker.outbuf += wire.frame(payload)
        self._flush_jobs(worker)

    def _flush_jobs(self, worker: WorkerProc) -> None:
        """Write what the job pipe takes now; watch it for room if some is left."""
        buf = worker.outbuf
        try:
            while buf:
                del buf[: os.write(worker.job_fd, buf)]
        except BlockingIOError:
            pass
        except OSError:  # the worker is gone: its sentinel will tell
            buf.clear()
        watching = worker.job_fd in self.fd2role
        if buf and not watching:
            self._watch(worker.job_fd, worker, "job")
        elif not buf and watching:
            self._unwatch(worker.job_fd)

    # -- dispatch --------------------------------------------------------------

    def _wire(self, key: int) -> wire.WireJob | None:
        """The job as a worker gets it, pickled once per run; None if it cannot be."""
        entry = self.wired.get(key)
        if entry is not None:
            return entry
        _key, task, pass_shared, kwargs, shared, timeout = self.jobs[key]
        dumps_task = self.definitions.dumps_task
        try:
            try:
                task_blob, needs, form = dumps_task(task)
            except TransportError:  # again, to name the task (a rare path)
                task_blob, needs, form = dumps_task(task, task_name(task))
            data_blob = None
            if kwargs or shared:
                try:
                    data_blob = pickle.dumps((kwargs, shared), PROTOCOL)
                    if b"__main__" in data_blob:
                        data_blob = dumps_value((kwargs, shared), "data")
                except Exception:
                    name = task_name(task)
                    dumps_value(kwargs, f"keyword arguments of task {name!r}", "kwargs")
                    dumps_value(shared, f"shared state of task {name!r}", "shared")
                    data_blob = dumps_value((kwargs, shared), f"data of task {name!r}")
        except TransportError as exc:
            self._finish(key, None, None, raised(exc))
            return None
        alarm = None if timeout is None else timeout + timeout_grace(timeout)
        if needs:
            self.needs[key] = needs
        entry = self.wired[key] = wire.WireJob(
            key, task_blob, pass_shared, data_blob, alarm, form
        )
        return entry

    def _dispatch(self, final: bool) -> None:
        """Hand out the backlog: to idle workers, or (*final*) to all, balanced."""
        backlog = self.backlog
        if not backlog:
            return
        if self.broken is not None:
            while backlog:
                key = backlog.popleft()
                task = self.jobs[key].task
                self._finish(key, None, None, raised(PoolError(
                    f"task {task_name(task)!r} was not run: {self.broken}"
                )))
            return
        live = self.workers
        if self.n_retiring:
            live = [w for w in live if not w.retiring]
        if len(live) < self.pool.workers:  # start workers as the backlog needs them
            n_takers = sum(1 for w in live if not w.ready or not w.outstanding)
            while len(live) < self.pool.workers and n_takers < len(backlog):
                try:
                    self._start_worker()
                except PoolError as exc:  # out of processes or fds, say
                    self._unblamed_death(f"the last could not be started: {exc}")
                    if self.broken is not None:
                        self._dispatch(final)  # fails the backlog
                        return
                    break  # go on with the workers there are; wait() retries
                n_takers += 1
        if not live:
            return
        if final:
            plan = self._balance(live, backlog)
        else:  # one job per idle worker: a spare goes to whoever frees up first
            plan = {}
            for worker in live:
                if not backlog:
                    break
                if worker.ready and not worker.outstanding:
                    plan[worker] = [backlog.popleft()]
            if not plan:
                return
        wire_job = self._wire
        for worker, keys in plan.items():
            jobs = [job for job in map(wire_job, keys) if job is not None]
            if not jobs:
                continue
            sent = [job.key for job in jobs]
            # the tickets first: a worker never holds a job without its ticket
            n = wire.write_tickets(worker.ticket_w, sent)
            if n < len(sent):  # its tickets pipe is full: the rest waits here
                backlog.extendleft(reversed(sent[n:]))
                if not n:
                    continue
                jobs, sent = jobs[:n], sent[:n]
            worker.outstanding.extend(sent)
            self.sent_at.update(dict.fromkeys(sent, time.monotonic()))
            plain = [tuple(job) for job in jobs]  # see wire: plain on the wire
            body = (self._definitions_for(worker, sent), plain)
            self._send(worker, pickle.dumps((wire.JOBS, body), PROTOCOL))

    def _take_back(self, worker: WorkerProc) -> list[int]:
        """Take back the jobs *worker* holds but has not started; their keys.

        Reading their tickets (see ``wire``) settles it at once, whatever the
        worker is doing: those jobs will not start there.
        """
        outstanding = worker.outstanding
        if not outstanding:
            return []
        taken = wire.read_tickets(worker.ticket_r, len(outstanding))
        if taken:
            gone = set(taken)
            kept = [key for key in outstanding if key not in gone]
            outstanding.clear()
            outstanding.extend(kept)
        return taken

    def _rebalance(self, final: bool) -> float | None:
        """Hand jobs held behind a long task to an idle worker; when to look again.

        With the backlog empty and a worker idle, what a worker holds and
        has not started is taken back and dispatched again (*final*: all of
        it, else one job per idle worker) once its first job has been there
        ``STEAL_AFTER`` or longer: running (a long task), or waiting to start
        (a worker starting, or slow to begin its next job). Returns the
        seconds until the next look is due, or None: nothing to wait for.
        """
        workers = self.workers
        if not any(w.ready and not w.outstanding and not w.retiring for w in workers):
            return None
        now = time.monotonic()
        next_look = None
        taken: list[int] = []
        for worker in workers:
            outstanding = worker.outstanding
            if not outstanding:
                continue
            slot, head = worker.slot, outstanding[0]
            if slot[0] == head:
                if len(outstanding) == 1:
                    continue  # it runs its only job
                since = slot[1]  # running (or loading) since
            else:  # not started yet; the slot tells nothing when it will be
                since = self.sent_at.get(head, now)
            wait = since + STEAL_AFTER - now
            if wait <= 0:
                moved = self._take_back(worker)
                if moved:
                    taken += moved
                    continue
                # all of it is starting, or done: look again, in case a job
                # it is starting turns long
                wait = STEAL_AFTER
            if next_look is None or wait < next_look:
                next_look = wait
        if taken:
            self.backlog.extend(taken)
            self._dispatch(final)
        return next_look

    def _definitions_for(
        self, worker: WorkerProc, keys: list[int]
    ) -> list[tuple[int, bytes]]:
        """The definitions jobs *keys* need that *worker* has not got; now it has."""
        needs = self.needs
        if not needs:
            return []
        has, blobs = worker.definitions, self.definitions.blobs
        new = []
        for key in keys:
            for number in needs.get(key, ()):
                if number not in has:
                    has.add(number)
                    new.append((number, blobs[number]))
        return new

    def _balance(
        self, live: list[WorkerProc], backlog: deque[int]
    ) -> dict[WorkerProc, list[int]]:
        """Assign the whole backlog, each job where it should start soonest.

        An idle worker first, then one still starting, then the fewest jobs
        waiting; among equals, the worker whose task started last (a task
        that has run long is likely to run longer; one starting up counts as
        starting now). A worker whose first job has been there
        ``STEAL_AFTER`` or longer (a long task, a slow start) comes after
        all the others: what it got would wait, or be taken back.
        """
        now = time.monotonic()
        sent_at = self.sent_at

        def key(worker: WorkerProc, n: int) -> tuple:
            if n == 0:
                return (False, 0, not worker.ready, 0.0, worker.index)
            slot, outstanding = worker.slot, worker.outstanding
            if not outstanding:
                since = now  # its first job is just being planned
            elif slot[0] == outstanding[0]:
                since = slot[1]  # running since
            else:
                since = sent_at.get(outstanding[0], now)  # not started: since sent
            return (now - since >= STEAL_AFTER, n, True, -since, worker.index)

        heap = [(*key(w, len(w.outstanding)), w) for w in live]
        heapq.heapify(heap)
        plan: dict[WorkerProc, list[int]] = {}
        while backlog:
            *_key, worker = heap[0]
            plan.setdefault(worker, []).append(backlog.popleft())
            n = len(worker.outstanding) + len(plan[worker])
            heapq.heapreplace(heap, (*key(worker, n), worker))
        return plan

    # -- results ---------------------------------------------------------------

    def _poll(self, timeout: float | None) -> None:
        # poll() takes at most INT_MAX ms (24.8 days): wake before, and look again
        if timeout is None:
            ms = None
        else:
            ms = min(max(0, int(timeout * 1000) + 1), _MAX_POLL_MS)
        dead = []
        for fd, _events in self.poller.poll(ms):
            worker, role = self.fd2role.get(fd, (None, ""))
            if worker is None:
                if role == "wake":
                    self.emitter.emit(self.relay.take())
                elif role == "woken":
                    with contextlib.suppress(BlockingIOError):
                        while os.read(self.wake_r, 4096):
                            pass
                    self.woken = True
            elif role == "result":
                self._read_results(worker)
            elif role == "sentinel":
                dead.append(worker)
            elif role == "job":
                self._flush_jobs(worker)
        for worker in dead:
            self._on_death(worker)

    def _read_results(self, worker: WorkerProc) -> None:
        buf = worker.inbuf
        while True:
            try:
                chunk = os.read(worker.result_fd, _READ_SIZE)
            except BlockingIOError:
                break
            except OSError:
                chunk = b""
            if not chunk:  # the worker is gone: its sentinel will tell
                self._unwatch(worker.result_fd)
                break
            buf += chunk
            if len(chunk) < _READ_SIZE:  # the pipe is empty: spare a system call
                break
        for payload in wire.split_frames(buf):
            kind, body = loads(payload)
            if kind == wire.RESULT:
                self._on_result(worker, _new_tuple(wire.WireOutcome, body))
            elif kind == wire.READY:
                worker.ready = True
            elif kind == wire.INIT_FAILED and self.broken is None:
                self.broken = (
                    f"its initializer {task_name(self.pool.initializer)!r} raised "
                    f"in worker pid {worker.pid}: {body} (the traceback is on "
                    f"stderr above); fix the initializer or its initargs"
                )

    def _on_result(self, worker: WorkerProc, outcome: wire.WireOutcome) -> None:
        key, shared_blob, ret_blob, exc_blob, problem, started, duration = outcome
        outstanding = worker.outstanding
        if outstanding and outstanding[0] == key:
            outstanding.popleft()
        elif key in outstanding:
            outstanding.remove(key)
        else:  # not this worker's job now: a second answer, from a forked copy
            return
        task = self.jobs[key].task
        shared = None  # the dict it was sent with
        try:
            if problem is not None:
                raise _problem(task, worker, *problem)
            name = None
            if shared_blob is None:
                shared = {}
            elif isinstance(shared_blob, bytes):  # False: could not be pickled
                name = task_name(task)
                shared = loads_value(shared_blob, f"shared state of task {name!r}")
            if exc_blob is not None:
                excinfo = loads_excinfo(exc_blob)
                self._finish(key, shared, None, excinfo, started, duration,
                             worker.name)
                return
            ret = None
            if ret_blob is not None:
                name = name or task_name(task)
                ret = loads_value(ret_blob, f"return value of task {name!r}")
        except TransportError as exc:
            self._finish(key, shared, None, raised(exc), started, duration,
                         worker.name)
            return
        self._finish(key, shared, ret, None, started, duration, worker.name)

    # -- faults ----------------------------------------------------------------

    def _check_deadlines(self) -> float | None:
        """Kill workers past a deadline; return seconds until the next look.

        The deadlines: a timed job's timeout plus grace plus a second (the
        worker's own alarm should have ended it), and ``START_TIMEOUT`` for a
        worker to start (one hung importing something would wait for ever).
        """
        next_look = None
        now = time.monotonic()
        for worker in self.workers:
            if worker.killed_for is not None:
                continue
            if not worker.ready:
                wait = worker.born + START_TIMEOUT - now
                if wait <= 0:
                    worker.killed_for = int(wire.NO_KEY)  # no task to blame
                    kill_worker(worker)
                    continue
            elif not worker.outstanding:
                continue
            else:
                head = worker.outstanding[0]
                timeout = self.jobs[head].timeout
                if timeout is None:
                    continue
                slot = worker.slot
                if slot[0] != head:  # not started yet, or done and on its way
                    wait = UNSTARTED_POLL
                else:
                    # loading the task (imports...) is not its time, but may
                    # not hang for ever either
                    loading = slot[2] == wire.LOADING
                    limit = START_TIMEOUT if loading else (
                        timeout + timeout_grace(timeout) + 1.0
                    )
                    wait = slot[1] + limit - now
                    if wait <= 0:
                        # the worker's own alarm did not end it (a task that
                        # blocks or handles SIGALRM): do it here
                        worker.killed_for = head
                        kill_worker(worker)
                        continue
                    if loading:  # its clock starts once loaded, unannounced
                        wait = min(wait, UNSTARTED_POLL)
            next_look = wait if next_look is None else min(next_look, wait)
        return next_look

    def _on_death(self, worker: WorkerProc) -> None:
        """A worker died: read what it sent, blame its task, requeue its spares."""
        self._read_results(worker)
        running: int | None = None
        key, started, phase = worker.slot[0], worker.slot[1], worker.slot[2]
        if key != wire.NO_KEY and int(key) in worker.outstanding:
            running = int(key)
        if worker.killed_for is None and not (worker.stopping and running is None):
            # it crashed (a timeout's alarm too): what its tasks left running
            # dies, as when we kill it; one told to STOP ended in good order
            kill_leftovers(worker)
        exitcode = self._bury(worker)
        if worker.killed_for is not None and running != worker.killed_for:
            running = None  # killed for a task that just finished: not its fault
        requeue = [k for k in worker.outstanding if k != running]
        worker.outstanding.clear()
        self.backlog.extendleft(reversed(requeue))
        if running is not None:
            task, timeout = self.jobs[running].task, self.jobs[running].timeout
            loading = phase == wire.LOADING
            err: TaskTimeoutError | WorkerCrashError
            if running in self.cancel_kills:  # we killed it: Sched.cancel, abort
                self.cancel_kills.discard(running)
                ran = None if loading else time.monotonic() - started
                self._finish(running, None, None, cancelled_error(
                    task, f"; its worker process (pid {worker.pid}) was killed, "
                    f"and another takes its place"
                ), None if loading else started, ran, worker.name)
                return
            if loading and worker.killed_for == running:
                err = TaskTimeoutError(
                    f"task {task_name(task)!r} could not be loaded in worker pid "
                    f"{worker.pid} within {START_TIMEOUT:g} s (unpickling it, and "
                    f"importing what it needs, hung); the worker was killed"
                )
            elif worker.killed_for == running or (
                timeout is not None and exitcode == -signal.SIGALRM
            ):
                assert timeout is not None
                err = timeout_error(
                    task, timeout, f"; its worker (pid {worker.pid}) was killed"
                )
            else:
                doing = "loading" if loading else "running"
                err = WorkerCrashError(
                    f"task {task_name(task)!r} crashed its worker: worker pid "
                    f"{worker.pid} {describe_exit(exitcode)} while {doing} it"
                )
                err.exitcode = exitcode  # type: ignore[attr-defined]
            err.pid = worker.pid  # type: ignore[union-attr]
            if loading:  # it never started
                self._finish(running, None, None, raised(err), worker=worker.name)
            else:
                ran = time.monotonic() - started
                self._finish(running, None, None, raised(err), started, ran,
                             worker.name)
        elif not worker.stopping:
            self._unblamed_death(
                f"the last, pid {worker.pid}, {describe_exit(exitcode)}; its stderr "
                f"above may say why"
            )

    def _unblamed_death(self, last: str) -> None:
        """Count a worker lost with no task to blame; give up past max_restarts."""
        self.n_unblamed += 1
        if self.n_unblamed > self.pool.max_restarts:
            self.broken = (
                f"the pool gave up after {self.n_unblamed} worker processes "
                f"died without running a task (max_restarts="
                f"{self.pool.max_restarts}); {last}"
            )

    def _bury(self, worker: WorkerProc) -> int | None:
        """Reap a dead worker, relay its last output, close its pipes."""
        worker.dead = True
        process = worker.process
        process.join(KILL_WAIT)
        exitcode = process.exitcode
        for fd in (worker.result_fd, worker.sentinel, worker.job_fd):
            self._unwatch(fd)
        streams = [self.relay.remove(stream.fd) for stream in worker.streams]
        self.emitter.emit([s for s in streams if s is not None], flush=True)
        for conn in worker.conns:
            conn.close()
        if exitcode is not None:
            with contextlib.suppress(ValueError):
                process.close()
        if worker in self.workers:
            self.workers.remove(worker)
            if worker.retiring:
                self.n_retiring -= 1
        return exitcode

    # -- driving the run live --------------------------------------------------

    def wake(self) -> None:
        """End a blocking ``wait()`` soon; from any thread or a signal handler."""
        if self.wake_lock.acquire(blocking=False):  # held: closing, or waking
            try:
                if self.wake_w >= 0:
                    os.write(self.wake_w, b"\0")
            except OSError:  # full: a wake-up is pending already
                pass
            finally:
                self.wake_lock.release()

    def running(self) -> dict[int, Running]:
        """The jobs running now, from the workers' slots (any thread)."""
        out: dict[int, Running] = {}
        for worker in list(self.workers):
            slot = worker.slot
            key, since, phase = slot[0], slot[1], slot[2]
            # loaded and running, and the same job still (it may have moved on)
            if key != wire.NO_KEY and phase == wire.RUNNING and slot[0] == key:
                out[int(key)] = (since, worker.name)
        return out

    def cancel(self, key: int, force: bool) -> bool:
        """Drop job *key* if it has not started (True); else see the docstring."""
        if key not in self.jobs or any(o[0] == key for o in self.outcomes):
            return False  # done, its outcome on its way
        if key in self.backlog:
            self.backlog.remove(key)
            self._forget(key)
            return True
        for worker in self.workers:
            if key in worker.outstanding:
                if worker.slot[0] != key:
                    taken = self._take_back(worker)
                    if key in taken:
                        taken.remove(key)
                        self._forget(key)
                    self.backlog.extendleft(reversed(taken))  # to go out again
                    if key not in self.jobs:
                        return True
                # it runs, or is about to: the worker took its ticket
                if force:
                    if worker.slot[0] == key:
                        self._kill_to_stop(worker, key)
                    else:
                        self.cancelling[key] = worker
                break
        return False

    def drop_queued(self) -> list[int]:
        """Drop the backlog and take back what workers hold unstarted, now."""
        dropped = list(self.backlog)
        self.backlog.clear()
        for worker in self.workers:
            dropped += self._take_back(worker)
        for key in dropped:
            self._forget(key)
        return dropped

    def _forget(self, key: int) -> None:
        """Forget job *key*, dropped before any worker started it."""
        del self.jobs[key]
        self.wired.pop(key, None)
        self.needs.pop(key, None)
        self.sent_at.pop(key, None)

    def _kill_to_stop(self, worker: WorkerProc, key: int) -> None:
        """Stop running job *key*: kill its worker (its death is then seen)."""
        if worker.killed_for is not None:
            return  # being killed already
        worker.killed_for = key
        self.cancel_kills.add(key)
        self.cancelling.pop(key, None)
        kill_worker(worker)

    def _check_cancels(self, timeout: float | None) -> float:
        """Kill the workers that started a job cancelled with force meanwhile."""
        for key, worker in list(self.cancelling.items()):
            if worker.dead or key not in worker.outstanding:
                del self.cancelling[key]
            elif worker.slot[0] == key:
                self._kill_to_stop(worker, key)
        if not self.cancelling:
            return timeout if timeout is not None else _MAX_POLL_MS / 1000
        return UNSTARTED_POLL if timeout is None else min(timeout, UNSTARTED_POLL)

    def _retire(self) -> None:
        """Retire the workers beyond ``pool.workers``: idle ones first."""
        live = [w for w in self.workers if not w.dead and not w.stopping]
        keep = [w for w in live if not w.retiring]
        excess = len(keep) - self.pool.workers
        if excess > 0:  # the least busy go
            keep.sort(key=lambda w: (len(w.outstanding) + (not w.ready), -w.index))
            for worker in keep[:excess]:
                worker.retiring = True
                self.n_retiring += 1
        elif excess < 0:  # grown again: take back the busiest of the retiring
            back = sorted((w for w in live if w.retiring),
                          key=lambda w: -len(w.outstanding))
            for worker in back[:-excess]:
                worker.retiring = False
                self.n_retiring -= 1
        # as at the end of a run: its tasks' threads may finish first
        stop = wire.frame(pickle.dumps((wire.STOP, THREAD_WAIT), PROTOCOL))
        for worker in live:
            if (worker.retiring and worker.ready and not worker.outstanding
                    and not worker.outbuf):
                worker.stopping = True
                worker.outbuf += stop
                self._flush_jobs(worker)

    def _auto_resize(self, auto: Any, timeout: float | None) -> float:
        """Apply ``workers="auto"``; return when to look next."""
        now = time.monotonic()
        workers = auto.next_workers(self.pool.workers, bool(self.backlog), now)
        if workers != self.pool.workers:
            self.pool._set_workers(workers)
        due = auto.due(now)
        return due if timeout is None else min(timeout, due)

    # -- shutdown --------------------------------------------------------------

    def stop(self, cancel: bool) -> None:
        """Shut every worker down (gently unless *cancel*), then close the rest."""
        try:
            self._shutdown_workers(cancel)
        finally:
            self._teardown()

    def _shutdown_workers(self, cancel: bool) -> None:
        """STOP the idle workers, signal the others, wait, kill what is left.

        At the end of a run (not *cancel*), a worker waits for the threads
        its tasks left running, as a plain program's exit would, for at most
        ``THREAD_WAIT``; a Ctrl-C meanwhile kills them at once. A cancel
        kills them with their worker. A worker killed (busy, say) takes every
        process its tasks left running with it (``spawn.kill_worker``).
        """
        workers = [w for w in self.workers if not w.dead]
        thread_wait = 0.0 if cancel else THREAD_WAIT
        stop = wire.frame(pickle.dumps((wire.STOP, thread_wait), PROTOCOL))
        killed: list[WorkerProc] = []
        for worker in workers:
            worker.stopping = True
            if worker.ready and not worker.outstanding and not worker.outbuf:
                worker.outbuf += stop
                self._flush_jobs(worker)
                if not worker.outbuf:
                    continue
            # busy, still starting, or its pipe is full: no use waiting
            killed.append(worker)
            if cancel:
                signal_group(worker.pid, signal.SIGTERM)
            else:
                kill_worker(worker)
        grace = FINALIZE_GRACE if self.pool.finalizer is not None else STOP_GRACE
        deadline = time.monotonic() + (CANCEL_GRACE if cancel else grace)
        if cancel:
            alive = await_exit(workers, deadline)
        else:
            with sigint_unblocked():  # to end the wait for threads tasks left
                alive = await_exit(workers, deadline + thread_wait)
        for worker in alive:
            if worker in killed:
                kill_worker(worker)  # while it lives: what is below it is found
            else:
                signal_group(worker.pid, signal.SIGKILL)
        await_exit(alive, time.monotonic() + KILL_WAIT)
        for worker in workers:
            if worker in killed and worker not in alive:
                kill_leftovers(worker)  # it died of the SIGTERM
            elif cancel or worker in alive:
                signal_group(worker.pid, signal.SIGKILL)  # its task's leftovers
            self._bury(worker)

    def _teardown(self) -> None:
        """Close whatever is left; run even if shutting the workers down failed."""
        for worker in self.workers:
            with contextlib.suppress(Exception):
                if worker.process.exitcode is None:
                    signal_group(worker.pid, signal.SIGKILL)
                    worker.process.join(KILL_WAIT)
            for conn in worker.conns:
                with contextlib.suppress(Exception):
                    conn.close()
        self.workers = []
        with contextlib.suppress(Exception):
            self.relay.sync()
            self.emitter.emit(self.relay.take(), flush=True)
        self.relay.close()
        with self.wake_lock:
            os.close(self.wake_r)
            os.close(self.wake_w)
            self.wake_r = self.wake_w = -1


def _dumps_hooks(pool: ProcessWorkerPool) -> bytes | None:
    """The pool's initializer, initargs and finalizer, pickled for its workers."""
    if pool.initializer is None and pool.finalizer is None:
        return None
    try:
        return dumps_value(
            (pool.initializer, pool.initargs, pool.finalizer),
            "the initializer, initargs and finalizer of the pool",
        )
    except TransportError as exc:
        raise PoolError(f"{exc}; they must be picklable to reach the workers") from exc


def _problem(task: Any, worker: WorkerProc, what: str, reason: str) -> TransportError:
    """The error for what a worker could not move of *task*: *what*, *reason*."""
    name = task_name(task)
    if what in ("task", "arguments"):
        subject = "task" if what == "task" else "the data of task"
        return TransportError(
            f"{subject} {name!r} cannot be unpickled in worker pid {worker.pid}: "
            f"{reason}; the modules it refers to must be importable there",
            what=f"{subject} {name!r}",
            reason=reason,
        )
    if what == "result":
        return TransportError(
            f"the result of task {name!r} cannot be sent back: {reason}",
            what=f"result of task {name!r}",
            reason=reason,
        )
    return TransportError(
        f"{what} of task {name!r}: {reason}; values that leave a worker "
        f"process must be picklable",
        what=f"{what} of task {name!r}",
        reason=reason,
    )
