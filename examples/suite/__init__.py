"""An example test suite for ``pexen run examples/suite``.

Each module holds test functions decorated with ``func_meta``: what they
require and provide, which locks they claim, and the shared state they pass
on. ``test_report.test_export_report`` fails on purpose, so the tasks that
require its report are skipped.
"""
