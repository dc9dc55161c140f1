"""The village chooser an admin or supervisor meets on a committee page before picking a village."""

from __future__ import annotations

from typing import Any

from litestar.response import Template
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.ledger.pages.common import AnyRequest, page_number, villages_to_choose
from sanzi.platform.pages import page, paginate


async def choose_village(session: AsyncSession, request: AnyRequest, target: str, title: str) -> Template:
    """A list of the villages the caller may open, each linking to ``target?village=<code>``."""
    q = (request.query_params.get("q") or "").strip()[:50]
    number = page_number(request)
    villages: Any = await villages_to_choose(session, request.user, q, number)
    return page(
        request,
        "committee/choose.html",
        villages=villages.items,
        pager=paginate(villages.total, number, 50),
        target=target,
        heading=title,
        q=q,
    )
