"""Reports: the export fails on purpose, so what needs the report is skipped."""

from pexen.sched.meta import func_meta


@func_meta(requires=["schema"], provides=["report"])
def test_export_report(shared):
    n_tables = len(shared["tables"])
    assert n_tables == 3, f"the report needs 3 tables, the schema has {n_tables}"


@func_meta(requires=["report"])
def test_email_report():
    pass


@func_meta(requires=["report"])
def test_archive_report():
    pass
