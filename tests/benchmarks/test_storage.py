"""The scaling run's storage figures: a database's size on disk, a compressed backup of it and the restore of
that backup, on PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from benchmarks import run
from tests.conftest import create_database, postgres_url


@pytest.fixture
def admin_url(monkeypatch: pytest.MonkeyPatch) -> str:
    """The benchmark's admin URL (a libpq one, without a database) pointed at the test server."""
    url = make_url(postgres_url())
    credentials = (url.username or "") + (f":{url.password}" if url.password else "")
    rendered = f"postgresql://{credentials}@{url.host}:{url.port or 5432}"
    monkeypatch.setattr(run, "PG_ADMIN", rendered)
    return rendered


def test_storage_measures_the_database_a_backup_of_it_and_its_restore(admin_url: str, tmp_path) -> None:
    url, drop = create_database("postgres", tmp_path)
    name = make_url(url).database
    try:
        run.psql("INSERT INTO district (code, name) VALUES ('449901', '测试区'), ('449902', '测试二区')", name)
        districts = int(run.psql("SELECT count(*) FROM district", name))
        figures = run.storage(run.Database(name))
    finally:
        drop()
    # a migrated, empty schema: PostgreSQL's catalogue alone is several MiB; its dump holds the schema only
    assert figures["database_mib"] > 1
    assert 0 < figures["backup_mib"] < figures["database_mib"]
    assert figures["backup_seconds"] > 0
    # restored into a database of its own, checked against the original, then dropped
    assert figures["restore_seconds"] > 0
    tables, indexes, rows = (int(part.split()[0]) for part in figures["restored"].split(", "))
    assert tables > 20 and indexes > tables and rows >= districts >= 2
    assert run.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{name}_restore'") == "0"


def test_storage_of_a_missing_database_is_a_clear_error(admin_url: str) -> None:
    with pytest.raises(run.BenchError, match="does not exist"):
        run.storage(run.Database("sanzi_bench_no_such_database"))
