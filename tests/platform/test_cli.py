"""The `sanzi` command as an operator runs it: a real process against a real database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SANZI = str(Path(sys.executable).parent / "sanzi")


def sanzi(database_url: str, *args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url, "SANZI_ENV": "test", "SANZI_VAR_DIR": str(tmp_path)}
    env["COLUMNS"] = "500"  # rich-click wraps error boxes to the terminal width
    env.pop("REDIS_URL", None)
    return subprocess.run([SANZI, *args], env=env, capture_output=True, text=True, timeout=300)


def test_geography_import_is_idempotent(empty_database_url: str, tmp_path: Path) -> None:
    first = sanzi(empty_database_url, "geography", "import", tmp_path=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "added 7 districts, 63 townships, 1145 villages, 1145 collectives" in first.stdout
    second = sanzi(empty_database_url, "geography", "import", tmp_path=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "added 0 districts, 0 townships, 0 villages, 0 collectives" in second.stdout
    assert "1145 unchanged" in second.stdout


def test_geography_import_names_the_bad_line_and_writes_nothing(empty_database_url: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "level,code,name,parent_code,district_code,district_name,township_code,township_name,unit_type,seq3\n"
        "5,440111020200,永兴村委会,440111020,440111,白云区,440111020,龙归街道,village_committee(村委会),200\n"
        "5,4401110202,坏村委会,440111020,440111,白云区,440111020,龙归街道,village_committee(村委会),201\n",
        encoding="utf-8",
    )
    result = sanzi(empty_database_url, "geography", "import", str(bad), tmp_path=tmp_path)
    assert result.returncode != 0
    assert "line 3" in result.stderr and "第 3 行" in result.stderr
    check = sanzi(empty_database_url, "geography", "import", tmp_path=tmp_path)
    assert "added 7 districts, 63 townships, 1145 villages" in check.stdout  # nothing was half-loaded before


def test_geography_import_refuses_a_non_utf8_file(empty_database_url: str, tmp_path: Path) -> None:
    bad = tmp_path / "gbk.csv"
    bad.write_bytes("level,code,name\n5,440111020200,永兴村委会\n".encode("gbk"))
    result = sanzi(empty_database_url, "geography", "import", str(bad), tmp_path=tmp_path)
    assert result.returncode != 0
    assert "UTF-8" in result.stderr


def test_demo_load_twice_is_safe_and_prints_logins(empty_database_url: str, tmp_path: Path) -> None:
    assert sanzi(empty_database_url, "geography", "import", tmp_path=tmp_path).returncode == 0
    first = sanzi(empty_database_url, "demo", "load", tmp_path=tmp_path)
    assert first.returncode == 0, first.stderr
    for username in ("admin", "yongxing", "longgui", "bidder1"):
        assert username in first.stdout
    second = sanzi(empty_database_url, "demo", "load", tmp_path=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "0 demo users created" in second.stdout


def test_db_upgrade_command(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
    result = sanzi(url, "db", "upgrade", "--no-prompt", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    again = sanzi(url, "db", "upgrade", "--no-prompt", tmp_path=tmp_path)
    assert again.returncode == 0, again.stderr


def test_a_command_on_an_unmigrated_database_says_so(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'not-migrated.db'}"
    result = sanzi(url, "ledger", "verify", tmp_path=tmp_path)
    assert result.returncode != 0
    assert "sanzi db upgrade" in result.stderr and "Traceback" not in result.stderr
