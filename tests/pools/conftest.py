"""Fixtures of the pool tests."""

from __future__ import annotations

import pytest

from tests._pools import START_METHODS


@pytest.fixture(params=START_METHODS)
def method(request):
    """Each multiprocessing start method of this platform, in turn."""
    return request.param
