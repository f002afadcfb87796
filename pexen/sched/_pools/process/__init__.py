"""``ProcessWorkerPool``: tasks in worker processes that survive the real world.

Design
======

Topology
--------
Each worker is a process of its own process group with private pipes: jobs
in, results out, and stdout, stderr and log records out (``wire``,
``worker``). With one pipe per worker the parent knows exactly which jobs
each worker holds, and a dying worker cannot wedge anything shared. The
parent runs no thread for jobs and results: the scheduler's own thread sends
and receives in ``wait()``, with ``poll()`` over every result pipe, every
process sentinel and the output relay's wake-up fd, so every blocking wait
also notices a worker that died. One thread (``output``) drains output pipes
so tasks never block on them.

Dispatch and batching
---------------------
``submit`` only queues a job (the *backlog*). ``wait`` hands it out: while
it blocks, an idle worker gets one job at a time, so a spare goes to
whichever worker frees up first instead of queueing behind a long task; just
before ``wait`` returns (the caller may now hold a result for a while), the
rest is committed so that no worker starves meanwhile: to an idle worker
first, then one still starting, then the one with the fewest jobs, and among
equals the one whose task started last (one that has run long is likely to
run longer); last of all, a worker whose first job has been there
``STEAL_AFTER`` (2 ms, the work ``spare="auto"`` keeps queued per worker) or
more: a long task, or a slow start.

A task may turn long after jobs were committed behind it. So, work
stealing: while ``wait`` blocks (and again before it returns), a worker that
is idle with the backlog empty makes the pool take back the jobs any worker
holds, not started, behind a task that has run ``STEAL_AFTER`` or more (or
held unstarted that long: a worker starting, or slow to begin), and hand
them out again, to the idle workers first. Tiny tasks never run that long,
so nothing moves for them; what they pay is the ticket below, a write per
batch in the parent and a read per job in the worker. Taking a job back
needs no answer from its worker, which may be deep in the long task: a
worker starts a job only once it has read the job's *ticket* from a pipe
the parent can read too (``wire``), so each job is started by its worker or
taken back by the parent, never both and never neither. A job is never run
twice, nor lost. ``Sched.cancel`` and ``Sched.abort`` drop the jobs a worker
holds the same way, at once. Nothing moves while the caller holds a result
(the pool has no thread of its own): a job may then wait behind a long task
until the next ``wait``.

All jobs a worker gets at once travel in one message; results
come back one message per job as soon as it is done (a worker that dies
must not take finished results with it), and the parent reads everything a
pipe holds in one system call. Tasks are pickled once per run (by reference
where plain pickle can, by value with cloudpickle otherwise: ``transport``)
and the pickle is kept until the task finishes, so a job sent again after
its worker died is not pickled again. Workers start as the backlog needs
them, up to ``workers``, and are started with ``__main__`` hidden, so they
do not re-run the main script (what tasks take from it travels by value).

Failures
--------
* A task or value that cannot be pickled fails that task alone, with a
  ``TransportError`` (a ``PoolError``) saying what and why.
* A worker that dies is noticed through its sentinel. What it sent before
  dying is read first; the job it was running (the *slot* it shares with the
  parent says which) fails with ``WorkerCrashError`` naming the task, the pid
  and the exit code or signal; the jobs it held but had not started go back
  to the front of the backlog. A crashed task is never run again, so a task
  that kills its worker cannot loop. Deaths no task can be blamed for (a
  worker that dies while starting, or takes ``START_TIMEOUT`` to start) are
  counted; past ``max_restarts`` in one run the pool gives up and fails the
  remaining tasks with ``PoolError`` instead of restarting workers for ever.
* Timeouts: the worker arms ``setitimer`` for each job with a ``timeout``
  (plus ``timeout_grace``); the default action of SIGALRM ends it even inside
  C code, and the parent then reports ``TaskTimeoutError``. Should the alarm
  not end it (a task that blocks or handles SIGALRM), the parent kills the
  worker a second later. Either way the worker is replaced, and what its
  tasks left running dies with it: every process carrying the worker's id
  in ``PEXEN_RUN_ID``, below it or in its process group, even in a session
  of its own (Linux; elsewhere, its process group: ``spawn``). So does what
  a task that crashed its worker left; a worker that ends in good order
  kills nothing.

Shutdown
--------
At the end of a run, ``stop()`` sends STOP to the workers, each of which
waits for the threads its tasks left running, as a plain program's exit
would, but ``THREAD_WAIT`` at most (then it names them on stderr and exits,
killing them); a Ctrl-C ends that wait at once, killing the workers. On
cancel (``break``, Ctrl-C, an exception) idle workers get a STOP that waits
for nothing, busy ones SIGTERM on their process group, then SIGKILL
after a grace period. Every worker is joined (no zombie), every fd closed,
the relay thread joined; SIGINT is blocked meanwhile, so a second Ctrl-C
cannot leave half-stopped workers. An ``atexit`` hook stops pools still
running when the interpreter exits. No ``multiprocessing`` lock, queue or
semaphore is used, so none can leak. Should the parent process itself die
(``kill -9``), each worker's process group, the worker and what its task
started there, dies with it (Linux; ``worker``).

Where each part lives: the pool object and its configuration in ``pool``;
one run's state, dispatch, results and faults in ``run``; starting and
stopping worker processes, and the start method, in ``spawn``; the worker's
own loop in ``worker``; the messages and their framing in ``wire``; output
relayed from workers in ``output``.
"""

from __future__ import annotations

from pexen.sched._pools.process.pool import ProcessWorkerPool
from pexen.sched._pools.process.spawn import default_start_method

__all__ = ["ProcessWorkerPool", "default_start_method"]
