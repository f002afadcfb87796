"""``--pool``, ``--workers``, ``--spare``: the pool the command line builds."""

from __future__ import annotations

import pytest

from pexen.cli import _pools
from pexen.cli._parser import build_parser


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--pool", "thread", "-j", "3", "--spare", "0"], ("ThreadWorkerPool", 3, 0)),
        (["--pool", "process", "-j", "2", "--spare", "4"], ("ProcessWorkerPool", 2, 4)),
        (["-j", "auto"], ("ThreadWorkerPool", _pools.available_cpus(), 1)),
        ([], ("ThreadWorkerPool", _pools.available_cpus(), 1)),
    ],
)
def test_pool_options_reach_the_pool(argv, expected):
    args = build_parser().parse_args(["run", "x", *argv])
    pool = _pools.make_pool(args)
    assert (type(pool).__name__, pool.workers, pool.spare) == expected
