"""Each village's public disclosure (村务公开), no login: its assets, contracts, income and expenditure by
period, its listings and results (a fragment from the trading module's pages, since the ledger does not
import it), and the published root of its books with the inclusion proof anyone can check."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from litestar import Controller, get
from litestar.response import Template
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.ledger import chain
from sanzi.ledger.pages.books import income_chart, income_expenditure_by_period
from sanzi.ledger.pages.common import PERIOD_KINDS, AnyRequest, page_number, period_choice, today_beijing
from sanzi.ledger.services.assets import AssetService
from sanzi.ledger.services.books import BooksService
from sanzi.ledger.services.contracts import ContractService
from sanzi.platform.access import collective_for
from sanzi.platform.auth import PUBLIC
from sanzi.platform.pages import page, paginate, request_language
from sanzi.platform.problems import DomainError, NotFound
from sanzi.platform.services import GeographyService

PER_PAGE = 30
SHOWN = 100  # assets and contracts shown on a village's page (the most a village has is far fewer)


class DisclosurePages(Controller):
    """村务公开：任何人无需登录即可查看各村的资产、合同、收支、交易和账簿根哈希。"""

    path = "/villages"
    include_in_schema = False

    @get("/", opt=PUBLIC)
    async def villages(self, db_session: AsyncSession, request: AnyRequest) -> Template:
        query = request.query_params
        geography = GeographyService(db_session)
        districts = await geography.districts()
        district = query.get("district") if query.get("district") in {d.code for d in districts} else None
        townships = await geography.townships(district) if district else []
        township = query.get("township") if query.get("township") in {t.code for t in townships} else None
        q = (query.get("q") or "").strip()[:50] or None
        number = page_number(request)
        result = await geography.villages(district, township, q, number, PER_PAGE)
        return page(
            request,
            "disclosure/villages.html",
            villages=result.items,
            pager=paginate(result.total, number, PER_PAGE),
            districts=[(d.code, d.name) for d in districts],
            townships=[(t.code, t.name) for t in townships],
            filters={"district": district or "", "township": township or "", "q": q or ""},
        )

    @get("/{code:str}", opt=PUBLIC)
    async def village(self, db_session: AsyncSession, request: AnyRequest, code: str) -> Template:
        from sanzi.platform.models import Village

        collective = await collective_for(db_session, code, None, public=True)
        village = await db_session.get(Village, collective.village_code)
        assert village is not None
        books = BooksService(db_session)
        assets = await AssetService(db_session).list(collective, None, None, None, 1, SHOWN)
        contracts = await ContractService(db_session).list(collective, None, None, None, 1, SHOWN)
        by, year = period_choice(request, today_beijing().year)
        lang = request_language(request)
        table = await income_expenditure_by_period(books, collective, by, year, lang)
        return page(
            request,
            "disclosure/village.html",
            village=village,
            collective=collective,
            assets=assets,
            contracts=contracts,
            by=by,
            year=year,
            kinds=list(PERIOD_KINDS.items()),
            table=table,
            chart=income_chart(table, lang),
            verification=await _verification(books, collective),
        )


#: how long a village page shows a chain verification before it verifies again. A new entry or a new published
#: root changes what is verified and is checked at once; this only spares re-reading and re-hashing a whole
#: unchanged history (ten years of a village: thousands of entries, most of a page's time) on every view, and
#: bounds how long a change to stored history made behind the platform's back shows as intact here (the
#: scheduled `sanzi ledger verify` checks every chain in full)
VERIFIED_FOR_SECONDS = 60.0
_VERIFIED_MAX = 4096
_verified: dict[tuple[int, int, str, int | None], tuple[float, datetime, chain.ChainBreak | None]] = {}


async def _checked_chain(
    books: BooksService, collective: Any, root_id: int | None
) -> tuple[datetime, chain.ChainBreak | None]:
    """(when it was verified, the first break or None) for the collective's chain as it stands."""
    key = (collective.id, collective.chain_length, collective.chain_head, root_id)
    now = time.monotonic()
    known = _verified.get(key)
    if known is not None and now - known[0] < VERIFIED_FOR_SECONDS:
        return known[1], known[2]
    failure = await books.verify_collective(collective)
    if len(_verified) >= _VERIFIED_MAX:
        _verified.clear()
    _verified[key] = (now, datetime.now(UTC), failure)
    return _verified[key][1], failure


async def _verification(books: BooksService, collective: Any) -> dict[str, Any]:
    """The chain's state (verified within the last minute), the latest published root and this village's
    inclusion proof, checked."""
    try:
        proof = await books.proof(collective.village_code)
    except (NotFound, DomainError):
        proof = None
    verified_at, failure = await _checked_chain(books, collective, proof.root.id if proof else None)
    out: dict[str, Any] = {
        "ok": failure is None,
        "failure": failure,
        "verified_at": verified_at,
        "chain_length": collective.chain_length,
        "chain_head": collective.chain_head,
        "proof": proof,
        "proof_ok": None,
    }
    if proof is None:
        return out
    out["proof_ok"] = chain.verify_inclusion(
        bytes.fromhex(proof.leaf),
        proof.leaf_index,
        proof.root.tree_size,
        [bytes.fromhex(node) for node in proof.audit_path],
        bytes.fromhex(proof.root.root_hash),
    )
    out["behind"] = collective.chain_length - proof.chain_length
    return out


controllers: list[Any] = [DisclosurePages]
