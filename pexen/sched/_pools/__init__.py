"""Worker pools: where tasks run (private; the public face is ``pexen.sched.pool``).

The layering rule: a pool runs jobs and reports outcomes, nothing more. Pools
import ``base`` (the interface, the ``Job`` and ``Outcome`` records and the
helpers they share), the calling convention (``pexen.sched._calling``), the
errors and result types; never the planner, the graph checks or ``Sched``,
which own all scheduling state. A test checks the rule.

Layout::

    base.py       the WorkerPool interface, Job/Outcome, helpers pools share
    bridge.py     driving a blocking pool from an event loop (a thread per run)
    inline.py     InlineWorkerPool: in the caller's thread
    thread.py     ThreadWorkerPool: threads of this process
    eventloop.py  AsyncWorkerPool: coroutines on an event loop
    process/      ProcessWorkerPool: worker processes (see its __init__)
    transport.py  pickling tasks, values and exceptions for other processes
    remote.py     RemotePool: the base of the pools on an engine's executor
    executor.py   ExecutorWorkerPool: any concurrent.futures-style executor
    dask.py       DaskWorkerPool
    mpi.py        MPIWorkerPool
    engines.py    importing Dask and mpi4py lazily, naming the extra to install
"""
