"""End-to-end proof in a real browser: Debian's Chromium driven by Playwright against a real server process on
PostgreSQL with the scheduler running. Screenshots of every step are kept under var/test-artefacts/e2e/.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.auction.harness import PROJECT, AppServer
from tests.conftest import REQUIRE_SERVICES, create_database, load_villages, run_sync

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTEFACTS = PROJECT / "var" / "test-artefacts" / "e2e"
SANZI = PROJECT / ".venv" / "bin" / "sanzi"


def _require_chromium() -> None:
    if not Path(CHROMIUM).exists():
        message = "Debian's chromium is not installed (apt-get install chromium)"
        if REQUIRE_SERVICES:
            pytest.fail(f"SANZI_REQUIRE_SERVICES=1 but {message}")
        pytest.skip(message)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    """A migrated PostgreSQL database with the villages and the demo logins, served by a real uvicorn process."""
    _require_chromium()
    directory = tmp_path_factory.mktemp("e2e")
    url, drop = create_database("postgres", directory)
    try:
        run_sync(lambda: load_villages(url))
        env = {**os.environ, "DATABASE_URL": url, "SANZI_ENV": "test", "SANZI_VAR_DIR": str(directory)}
        env.pop("REDIS_URL", None)
        subprocess.run([str(SANZI), "demo", "load"], env=env, cwd=PROJECT, check=True, capture_output=True)
        server = AppServer("e2e", url, None, directory)
        server.start()
        try:
            server.wait_healthy()
            yield server
        finally:
            server.stop()
    finally:
        drop()


@pytest.fixture(scope="module")
async def chromium() -> AsyncIterator[Any]:
    _require_chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            await browser.close()


class Shots:
    """Numbered screenshots of one test's steps, kept as test artefacts."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.count = 0
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)

    async def take(self, page: Any, name: str) -> Path:
        self.count += 1
        path = self.directory / f"{self.count:02d}-{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Shots:
    name = re.sub(r"[^\w.-]+", "-", request.node.name)
    return Shots(ARTEFACTS / name)


PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}
DESKTOP = {"viewport": {"width": 1280, "height": 900}}
