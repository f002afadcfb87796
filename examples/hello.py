"""A small pipeline: a schema, two loaders that share a lock, a report."""

from pexen.sched import Sched
from pexen.sched.meta import func_meta
from pexen.sched.pool import ThreadWorkerPool


@func_meta(provides=["schema"])
def create_schema(shared):
    shared["tables"] = ["users", "orders"]


@func_meta(requires=["schema"], provides=["users"], claims=["db"])
def load_users(shared):
    shared["users"] = 3
    return "3 users"


@func_meta(requires=["schema"], provides=["orders"], claims=["db"])
def load_orders(shared):
    shared["orders"] = 5
    return "5 orders"


@func_meta(requires=["users", "orders"])
def report(shared):
    return f"{shared['users']} users placed {shared['orders']} orders"


if __name__ == "__main__":
    tasks = [report, load_orders, load_users, create_schema]
    for res in Sched(tasks).run(pool=ThreadWorkerPool(workers=2)):
        print(f"{res.task.__name__:14} -> {res.ret!r}")
