"""The web front end: two tests need the schema, two need port 8080 alone."""

import time

from pexen.sched.meta import func_meta


@func_meta(requires=["schema"])
def test_login(shared):
    assert "users" in shared["tables"]
    time.sleep(0.05)


@func_meta(requires=["schema"], claims=["port-8080"])
def test_api_serves_orders(shared):
    """Claims port 8080, so it never runs at the same time as test_static_files."""
    assert "orders" in shared["tables"]
    time.sleep(0.1)


@func_meta(claims=["port-8080"])
def test_static_files():
    time.sleep(0.1)


@func_meta(priority=-1)
def test_config_loads():
    """Lower priority runs first among the tasks ready at the start."""
    config = {"debug": False, "workers": 4}
    assert config["workers"] > 0
