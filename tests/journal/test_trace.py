"""``ChromeTrace`` (SPEC §10) and the JSON event log: what they write for
the events of a run, checked against the trace-event format
(``tests._traceformat``), a run killed midway included."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from pexen._eventlog import JsonEventLog
from pexen.sched import Event, Sched, TaskRes
from pexen.sched.pool import ProcessWorkerPool, ThreadWorkerPool
from pexen.trace import ChromeTrace
from tests import _traceformat
from tests._events import Clock, observed_run
from tests.journal._tasks import failure, named

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def two_worker_run(observer):
    """Events of a run: a and b on two workers, c after a on w1 (failing),
    d skipped."""
    a = named("a", provides=["x"], claims=["port"], priority=-1)
    b, c, d = named("b", uses=["disk"]), named("c", requires=["x"]), named("d")
    clock = Clock()
    observer(clock.event("run-started", workers=2))
    observer(clock.event("dispatched", task=a))
    observer(clock.event("dispatched", task=b))
    observer(clock.event("dispatched", 0.1, task=c))
    observer(clock.event("started", task=a, worker="w1"))
    observer(clock.event("started", task=b, worker="w2"))
    observer(clock.event("finished", 1.0, task=a, worker="w1", res=TaskRes(a),
                         duration=0.9))
    observer(clock.event("started", task=c, worker="w1"))
    observer(clock.event("finished", 0.5, task=c, worker="w1",
                         res=TaskRes(c, excinfo=failure("boom"))))
    observer(clock.event("finished", 0.5, task=b, worker="w2", res=TaskRes(b)))
    observer(clock.event("skipped", task=d, reason="the run was stopped early"))
    observer(clock.event("run-ended"))


def test_a_trace_has_a_slice_per_attempt_on_worker_tracks(tmp_path):
    path = tmp_path / "t.json"
    with ChromeTrace(path) as trace:
        two_worker_run(trace)
    events, closed = _traceformat.load(path)
    assert closed
    tracks = _traceformat.check(events)
    names = {e["tid"]: e["args"]["name"] for e in events
             if e["ph"] == "M" and e["name"] == "thread_name"}
    by_track = {names[tid]: [s["name"] for s in slices]
                for (_, tid), slices in tracks.items()}
    assert by_track == {"w1": ["a", "c"], "w2": ["b"]}
    slices = {e["name"]: e for e in events if e["ph"] == "X"}
    assert slices["a"]["args"] == {"priority": -1, "provides": ["x"],
                                   "claims": ["port"], "outcome": "passed"}
    assert slices["a"]["dur"] == pytest.approx(0.9e6)
    assert slices["b"]["args"] == {"priority": 0, "uses": ["disk"],
                                   "outcome": "passed"}
    assert slices["c"]["args"]["outcome"] == "failed"
    assert slices["c"]["args"]["error"] == "ValueError: boom"
    [skip] = [e for e in events if e["ph"] == "i" and e["name"].startswith("skipped")]
    assert skip["name"] == "skipped: d"
    assert skip["args"] == {"reason": "the run was stopped early"}
    counters = [e["args"] for e in events if e["ph"] == "C"]
    assert max(c["running"] for c in counters) == 2
    assert counters[-1] == {"running": 0, "queued": 0}


def test_slices_that_would_overlap_on_a_worker_go_to_a_lane(tmp_path):
    """Without the pool's durations a slice ends when its result came back,
    which may be after the worker took its next task."""
    a, b = named("a"), named("b")
    clock = Clock()
    path = tmp_path / "t.json"
    with ChromeTrace(path) as trace:
        trace(clock.event("run-started"))
        trace(clock.event("dispatched", task=a))
        trace(clock.event("dispatched", task=b))
        trace(clock.event("started", task=a, worker="w1"))
        trace(clock.event("started", 1, task=b, worker="w1"))
        trace(clock.event("finished", 0.5, task=a, worker="w1", res=TaskRes(a)))
        trace(clock.event("finished", 1, task=b, worker="w1", res=TaskRes(b)))
        trace(clock.event("run-ended"))
    events, _ = _traceformat.load(path)
    tracks = _traceformat.check(events)
    assert sorted(len(slices) for slices in tracks.values()) == [1, 1]


def test_each_run_closes_the_array_and_the_next_one_reopens_it(tmp_path):
    path = tmp_path / "t.json"
    with ChromeTrace(path) as trace:
        two_worker_run(trace)
        assert _traceformat.load(path)[1]
        two_worker_run(trace)
        events, closed = _traceformat.load(path)
    assert closed
    _traceformat.check(events)  # both runs: same tracks, no overlaps
    assert [e["name"] for e in events if e["ph"] == "X"].count("a") == 2


def test_a_real_run(tmp_path):
    path = tmp_path / "t.json"
    tasks = [named(f"t{i}") for i in range(5)]
    with ChromeTrace(path) as trace:
        list(observed_run(Sched(tasks), [trace]))
    events, _ = _traceformat.load(path)
    _traceformat.check(events)
    assert sorted(e["name"] for e in events if e["ph"] == "X") == [
        f"t{i}" for i in range(5)
    ]
    counters = [e["args"] for e in events if e["ph"] == "C"]
    # the run's status at its start tells how many tasks wait to be handed out
    assert counters[0] == {"running": 0, "queued": 0, "waiting": 5}
    assert counters[-1] == {"running": 0, "queued": 0}


def test_a_worker_counts_once_whatever_order_its_events_come_in(tmp_path):
    """Told in the order a process pool tells them: c's start on w1 before
    the outcome of a, which ran there before it; d's start (with its outcome)
    after that of e, which w2 took after d."""
    a, b, c, d, e = (named(name) for name in "abcde")
    path = tmp_path / "t.json"
    clock = Clock()
    with ChromeTrace(path) as trace:
        trace(clock.event("run-started", workers=2))
        for task in (a, b, c, d, e):
            trace(clock.event("dispatched", task=task))
        trace(clock.event("started", 1, task=a, worker="w1"))
        trace(clock.event("started", task=b, worker="w2"))
        trace(clock.event("finished", 1, task=b, worker="w2", res=TaskRes(b)))
        trace(clock.event("started", 1, task=c, worker="w1"))
        a_ended = c_started = clock.now
        trace(Event("started", clock.now + 2, 0.0, task=e, worker="w2"))
        trace(Event("finished", a_ended, 0.0, task=a, worker="w1", res=TaskRes(a)))
        trace(Event("started", c_started, 0.0, task=d, worker="w2"))
        trace(Event("finished", c_started + 1, 0.0, task=d, worker="w2",
                    res=TaskRes(d)))
        trace(clock.event("finished", 3, task=c, worker="w1", res=TaskRes(c)))
        trace(clock.event("finished", 1, task=e, worker="w2", res=TaskRes(e)))
        trace(clock.event("run-ended"))
    events, _ = _traceformat.load(path)
    _traceformat.check(events)
    samples = [(e["ts"] / 1e6, e["args"]["running"]) for e in events if e["ph"] == "C"]
    assert samples == [(0, 0)] * 6 + [
        (1, 1), (1, 2), (2, 1), (3, 1),  # a, b, b ended, c (a's share ends)
        (5, 2), (5, 2),  # e (on w2), a's outcome: changes nothing
        (5, 2), (5, 2),  # d, told after e started on w2: not counted
        (6, 1), (7, 0), (7, 0),  # c, e, the end
    ]


@pytest.mark.parametrize("make_pool", [ProcessWorkerPool, ThreadWorkerPool],
                         ids=["process", "thread"])
def test_the_running_counter_stays_within_the_workers(tmp_path, make_pool):
    """A process worker tells the start of its next (spare) task before the
    outcome of its last one comes back: that worker still runs one task."""
    def work():  # a millisecond or so: long enough for the pool to see it start
        def fn():
            return sum(range(50_000))
        return fn

    path = tmp_path / "t.json"
    tasks = [named(f"t{i}", work()) for i in range(60)]
    with ChromeTrace(path) as trace:
        list(observed_run(Sched(tasks), [trace], make_pool(2, spare=2)))
    events, _ = _traceformat.load(path)
    _traceformat.check(events)  # running within 0..2 at every sample
    stamps = [e["ts"] for e in events if e["ph"] == "C"]
    assert stamps == sorted(stamps)  # no sample counts an event after its ts
    assert len([e for e in events if e["ph"] == "X"]) == 60


KILLED_TRACER = """
import os, signal, sys
from pexen.sched import Sched
from pexen.sched.meta import assign_val
from pexen.trace import ChromeTrace
from tests._events import observed_run

def make(i):
    def fn():
        return i
    fn.__qualname__ = f"t{i}"
    assign_val(fn, priority=i)
    return fn

trace = ChromeTrace(sys.argv[1])
for res in observed_run(Sched([make(i) for i in range(20)]), [trace]):
    if res.ret == 6:
        os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_run_killed_midway_leaves_a_trace_the_viewers_open(tmp_path):
    path = tmp_path / "t.json"
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILLED_TRACER), str(path)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    events, closed = _traceformat.load(path)
    assert not closed
    _traceformat.check(events)
    assert [e["name"] for e in events if e["ph"] == "X"] == [f"t{i}" for i in range(7)]


def test_the_event_log_has_a_json_object_per_event_per_line(tmp_path):
    path = tmp_path / "events.jsonl"
    with JsonEventLog(path) as log:
        two_worker_run(log)
    lines = path.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["event"] for r in records] == [
        "run-started", "dispatched", "dispatched", "dispatched", "started",
        "started", "finished", "started", "finished", "finished", "skipped",
        "run-ended",
    ]
    assert records[0]["workers"] == 2
    assert records[0]["time"].startswith("2023-11-1")  # ISO 8601, local time
    finished = [r for r in records if r["event"] == "finished"]
    assert finished[0] == {
        "time": finished[0]["time"], "wall": finished[0]["wall"],
        "event": "finished", "task": "a", "id": "a", "worker": "w1",
        "outcome": "passed", "duration": 0.9,
    }
    assert finished[1]["error"] == "ValueError: boom"
    assert records[-2]["reason"] == "the run was stopped early"


def test_the_event_log_appends(tmp_path):
    path = tmp_path / "events.jsonl"
    for _ in range(2):
        with JsonEventLog(path) as log:
            two_worker_run(log)
    assert len(path.read_text().splitlines()) == 24
