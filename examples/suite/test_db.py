"""A database the other tests need: started once, then migrated."""

import time

from pexen.sched.meta import func_meta


@func_meta(provides=["db"], claims=["port-5432"])
def test_start_db(shared):
    """Start the database; the tasks requiring "db" get its URL in ``shared``."""
    time.sleep(0.2)
    shared["db_url"] = "sqlite:///:memory:"


@func_meta(requires=["db"], provides=["schema"])
def test_migrate(shared):
    """Create the tables, passing their names on to the tasks requiring "schema"."""
    assert shared["db_url"].startswith("sqlite:")
    time.sleep(0.1)
    shared["tables"] = ["users", "orders"]
