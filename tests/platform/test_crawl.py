"""Crawl the site as every demo login and as the public: every page a link leads to answers without a server
error, and a page a role may not see sends it to log in (anonymous) or shows a readable refusal (403/404).

The crawl starts at the home page and the role's own navigation, follows same-site links breadth-first (GET
only, never logging out or switching language), and fetches linked PDFs without parsing them.
"""

from __future__ import annotations

import re
from collections import deque
from datetime import UTC, datetime
from html import unescape
from typing import Any
from urllib.parse import urldefrag, urlsplit

import pytest

from sanzi.platform.auth import Passwords
from sanzi.platform.demo import DEMO_LOGINS, DEMO_PASSWORD, load_demo_auctions, load_demo_books, load_demo_users
from sanzi.platform.pages import ROLE_NAV, PUBLIC_NAV
from tests.conftest import Browser

LINK = re.compile(r"""<a\b[^>]*\bhref=(["'])(.*?)\1""", re.IGNORECASE | re.DOTALL)
SKIP_PREFIXES = ("/api/", "/static/", "/schema", "/lang/", "/logout")
#: enough to reach every kind of page from each navigation (more only repeats kinds already seen)
MAX_PAGES = 120
#: distinct query strings followed per path, so that filters and page numbers do not swamp the crawl
MAX_QUERIES_PER_PATH = 2
#: each role's work areas that another role may not enter (admins use every official page, supervisors read
#: their area's committee pages)
REFUSED_AREAS = {
    "bidder": ("committee", "supervisor", "admin"),
    "committee": ("supervisor", "admin", "bidder"),
    "supervisor": ("admin", "bidder"),
    "admin": ("bidder",),
}


def same_site_links(html: str) -> list[str]:
    links = []
    for match in LINK.finditer(html):
        href = urldefrag(unescape(match.group(2)).strip())[0]
        parts = urlsplit(href)
        if parts.scheme or parts.netloc or not href.startswith("/") or href.startswith(SKIP_PREFIXES):
            continue
        links.append(href)
    return links


async def crawl(visitor: Browser, starts: list[str], logged_in: bool) -> tuple[dict[str, int], list[str]]:
    """Visit pages breadth-first; returns the status of each page and the problems found."""
    seen: dict[str, int] = {}
    queries: dict[str, int] = {}
    problems: list[str] = []
    queue = deque(starts)
    while queue and len(seen) < MAX_PAGES:
        url = queue.popleft()
        if url in seen:
            continue
        path, _, query = url.partition("?")
        if query:
            if queries.get(path, 0) >= MAX_QUERIES_PER_PATH:
                continue
            queries[path] = queries.get(path, 0) + 1
        response = await visitor.get(url)
        status = response.status_code
        seen[url] = status
        if status >= 500:
            problems.append(f"{url}: {status}")
            continue
        if status in (301, 302, 303, 307, 308):
            location = response.headers.get("location", "")
            if location.startswith("/login"):
                if logged_in:
                    problems.append(f"{url}: a logged-in visitor was sent to log in")
            elif location.startswith("/") and not location.startswith(SKIP_PREFIXES):
                queue.append(location)
            continue
        if status in (403, 404):
            if "text/html" not in response.headers.get("content-type", "") or "无法完成请求" not in response.text:
                problems.append(f"{url}: {status} without the readable refusal page")
            continue
        if status != 200:
            problems.append(f"{url}: unexpected {status}")
            continue
        content_type = response.headers.get("content-type", "")
        if content_type.startswith("application/pdf"):
            if not response.content.startswith(b"%PDF"):
                problems.append(f"{url}: not a PDF")
            continue
        if "text/html" in content_type:
            queue.extend(link for link in same_site_links(response.text) if link not in seen)
    return seen, problems


@pytest.fixture
async def demo_world(db: Any) -> None:
    """The demo data set inside the test's transaction (cheap password hashes)."""
    await load_demo_users(db, Passwords(cheap=True))
    await db.commit()
    await load_demo_books(db)
    await db.commit()
    await load_demo_auctions(db, datetime.now(UTC))
    await db.commit()


async def test_crawl_as_the_public(demo_world: None, browser: Any) -> None:
    visitor = await browser()
    work_pages = sorted({link.href for links in ROLE_NAV.values() for link in links})
    seen, problems = await crawl(visitor, [link.href for link in PUBLIC_NAV] + work_pages, logged_in=False)
    assert problems == []
    assert sum(1 for status in seen.values() if status == 200) >= len(PUBLIC_NAV)
    # every work area's page sends the public to log in rather than showing anything
    for href in work_pages:
        response = await visitor.get(href)
        assert response.status_code == 303 and response.headers["location"].startswith("/login?next="), href


@pytest.mark.parametrize("login", DEMO_LOGINS, ids=lambda login: login.username)
async def test_crawl_as_each_demo_login(demo_world: None, browser: Any, login: Any) -> None:
    visitor = await browser()
    response = await visitor.post("/login", {"username": login.username, "password": DEMO_PASSWORD})
    assert response.status_code == 303, response.text
    own = [link.href for link in ROLE_NAV.get(login.role.value, [])]
    seen, problems = await crawl(visitor, ["/", "/account", *own], logged_in=True)
    assert problems == []
    for href in own:
        assert seen.get(href) == 200, f"{login.username}: own page {href} answered {seen.get(href)}"
    # the work areas this role may not enter are refused with the readable page, never a server error
    refused = [
        link.href
        for area in REFUSED_AREAS[login.role.value]
        for link in ROLE_NAV[area]
        if link.href.startswith(f"/{area}/")
    ]
    assert refused
    for href in refused:
        response = await visitor.get(href)
        assert response.status_code in (403, 404), f"{login.username} on {href}: {response.status_code}"
        assert "无法完成请求" in response.text
