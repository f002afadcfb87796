"""The parser of ``pexen``: its help, its examples, and the exit statuses it lists."""

from __future__ import annotations

import pytest

from pexen.cli import main
from pexen.cli._exit import ExitStatus


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "usage: pexen" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("command", "example"),
    [
        ([], "pexen run examples/suite"),
        (["run"], "pexen run examples/suite"),
        (["list"], "pexen list examples/suite"),
        (["graph"], "pexen graph examples/scripts --format mermaid"),
    ],
)
def test_help_of_every_command_exits_0_with_examples(capsys, command, example):
    assert main([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert f"usage: pexen {' '.join(command)}".rstrip() in out
    assert "examples:" in out and example in out


def test_run_help_names_every_pool_and_option(capsys):
    assert main(["run", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # as if never wrapped
    assert "--pool {thread,process,dask,mpi}" in out
    assert "--address URL" in out and "--pool dask --address tcp://" in out
    assert "--pool mpi" in out.partition("examples:")[2]
    # Python 3.13 shows an option's value once: "-j, --workers N"
    assert "-j N, --workers N" in out or "-j, --workers N" in out
    for option in ("--spare N", "-x, --exitfirst"):
        assert option in out
    assert "--junit-xml FILE" in out and "-v, --verbose" in out and "-q, --quiet" in out


@pytest.mark.parametrize("command", [[], ["run"]])
def test_help_lists_every_exit_status_with_its_meaning(capsys, command):
    assert main([*command, "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # as if never wrapped
    listed = ", ".join(f"{s.value} {s.meaning}" for s in ExitStatus)
    assert f"exit status: {listed}." in out
