"""The scaling run's storage figures: a database's size on disk and a compressed backup of it, on PostgreSQL."""

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


def test_storage_measures_the_database_and_a_backup_of_it(admin_url: str, tmp_path) -> None:
    url, drop = create_database("postgres", tmp_path)
    try:
        figures = run.storage(run.Database(make_url(url).database))
    finally:
        drop()
    # a migrated, empty schema: PostgreSQL's catalogue alone is several MiB; its dump holds the schema only
    assert figures["database_mib"] > 1
    assert 0 < figures["backup_mib"] < figures["database_mib"]
    assert figures["backup_seconds"] > 0


def test_storage_of_a_missing_database_is_a_clear_error(admin_url: str) -> None:
    with pytest.raises(run.BenchError, match="does not exist"):
        run.storage(run.Database("sanzi_bench_no_such_database"))
