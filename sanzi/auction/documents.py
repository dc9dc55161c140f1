"""Trading documents: the announcement (交易公告), the result notice (成交公示), the transaction certificate
(交易鉴证书), and the public page where anyone checks a certificate against the platform and its books.

A certificate's verification code is ``{listing id}-XXXX-XXXX-XXXX-XXXX``: 80 bits of a SHA-256 over the trade's
facts and the hash of the winner's deposit entry in the village's hash chain. Changing any fact (price, winner,
asset, dates) or the books behind it changes the digest, so a forged or altered certificate no longer verifies;
the entry's hash ties the trade to the chain, whose head is in the published Merkle root.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from litestar import Controller, Request, Response, get
from litestar.response import Redirect, Template
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.auction.models import (
    Bid,
    DepositState,
    Listing,
    ListingAsset,
    ListingStatus,
    Registration,
    RegistrationStatus,
)
from sanzi.auction.schemas import documents as schemas
from sanzi.auction.services.listings import get_listing, is_official_of
from sanzi.auction.services.results import finished_listing, premium_percent
from sanzi.ledger import chain
from sanzi.ledger.models import Asset, JournalEntry, LedgerRoot, LedgerRootLeaf
from sanzi.ledger.services.books import BooksService
from sanzi.platform.auth import PUBLIC, roles
from sanzi.platform.documents import LABELS, label, pdf_response, render_pdf
from sanzi.platform.models import Bidder, Collective, Role, User, Village
from sanzi.platform.pages import page
from sanzi.platform.problems import Conflict, NotFound

CERTIFICATE_VERSION = 1
_LISTING_ID = re.compile(r"^\d{1,12}$")
_LETTERS = re.compile(r"^[A-Z2-7]{16}$")
_LOOKALIKES = str.maketrans("018", "OIB")
#: how many of the latest bids a result notice prints (the full history is on the result page)
RESULT_NOTICE_BIDS = 30

# ---- shared data ------------------------------------------------------------------------------------------


async def _place(session: AsyncSession, village_code: str) -> dict[str, str]:
    village = await session.scalar(select(Village).where(Village.code == village_code))
    if village is None:
        raise NotFound("村", "village")
    collective = await session.scalar(select(Collective.name).where(Collective.village_code == village_code))
    return {
        "village_code": village.code,
        "village_name": village.name,
        "township_name": village.township.name,
        "district_name": village.township.district.name,
        "collective_name": collective or f"{village.name}经济联合社",
    }


async def _assets(session: AsyncSession, listing_id: int) -> list[Asset]:
    return list(
        await session.scalars(
            select(Asset)
            .join(ListingAsset, ListingAsset.asset_id == Asset.id)
            .where(ListingAsset.listing_id == listing_id)
            .order_by(ListingAsset.id)
        )
    )


def _asset_line(asset: Asset) -> str:
    return f"{asset.name}（{label(asset.kind, 'asset_kind')}，{asset.area:f} {label(asset.area_unit, 'area_unit')}）"


def _term(months: int) -> str:
    years, rest = divmod(months, 12)
    return (f"{years} 年" if years else "") + (f"{rest} 个月" if rest else "") or "—"


def _now() -> datetime:
    return datetime.now(UTC)


async def _winner(session: AsyncSession, listing: Listing) -> tuple[Registration, Bidder]:
    row = (
        await session.execute(
            select(Registration, Bidder)
            .join(Bidder, Bidder.id == Registration.bidder_id)
            .where(Registration.id == listing.winner_registration_id)
        )
    ).one()
    return row[0], row[1]


# ---- announcement and result notice -----------------------------------------------------------------------

_WATERMARKS = {
    ListingStatus.SUSPENDED.value: "已中止",
    ListingStatus.TERMINATED.value: "已终止",
}


async def announcement_pdf(session: AsyncSession, listing_id: int, user: User | None) -> bytes:
    """The public once announced; before that the village's officials see a draft marked as such."""
    listing = await get_listing(session, listing_id, user)
    watermark = _WATERMARKS.get(listing.status) or (None if listing.announced_at else "草稿·未公告")
    return await render_pdf(
        "announcement.html",
        listing=listing,
        place=await _place(session, listing.village_code),
        assets=await _assets(session, listing.id),
        term=_term(listing.term_months),
        watermark=watermark,
        generated_at=_now(),
    )


async def result_pdf(session: AsyncSession, listing_id: int) -> bytes:
    """成交公示 for a sold listing, 流拍公告 for a failed one: public from the close on."""
    listing = await finished_listing(session, listing_id)
    sold = listing.status == ListingStatus.SOLD.value
    winner = await _winner(session, listing) if sold else None
    qualified = await session.scalar(
        select(func.count())
        .select_from(Registration)
        .where(
            Registration.listing_id == listing.id, Registration.status == RegistrationStatus.QUALIFIED.value
        )
    )
    bidders_who_bid = await session.scalar(
        select(func.count(func.distinct(Bid.registration_id))).where(Bid.listing_id == listing.id)
    )
    bids = (
        await session.execute(
            select(Bid, Registration.bidder_number)
            .join(Registration, Registration.id == Bid.registration_id)
            .where(Bid.listing_id == listing.id)
            .order_by(Bid.seq.desc())
            .limit(RESULT_NOTICE_BIDS)
        )
    ).all()
    return await render_pdf(
        "result.html",
        listing=listing,
        sold=sold,
        winner_registration=winner[0] if winner else None,
        winner=winner[1] if winner else None,
        premium=premium_percent(listing.starting_price_fen, listing.final_price_fen),
        qualified=qualified or 0,
        bidders_who_bid=bidders_who_bid or 0,
        bids=bids,
        place=await _place(session, listing.village_code),
        assets=await _assets(session, listing.id),
        term=_term(listing.term_months),
        watermark=None,
        generated_at=_now(),
    )


# ---- the transaction certificate and its verification code -------------------------------------------------


def certificate_facts(
    listing: Listing, assets: list[Asset], bidder: Bidder, anchor: JournalEntry | None
) -> dict[str, Any]:
    """Everything the verification code covers: the trade as recorded, and the books entry it rests on."""
    assert listing.closed_at is not None and listing.final_price_fen is not None
    return {
        "v": CERTIFICATE_VERSION,
        "listing_id": listing.id,
        "number": listing.number,
        "village_code": listing.village_code,
        "asset_codes": sorted(asset.code for asset in assets),
        "trade_type": listing.trade_type,
        "term_months": listing.term_months,
        "price_basis": listing.price_basis,
        "final_price_fen": listing.final_price_fen,
        "closed_at": chain.utc_timestamp(listing.closed_at),
        "winner_id_number": bidder.id_number,
        "winner_name": bidder.name,
        "anchor_entry_hash": anchor.hash if anchor is not None else None,
    }


def certificate_code(facts: dict[str, Any]) -> str:
    canonical = json.dumps(facts, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    digest = hashlib.sha256(b"sanzi-certificate\x00" + canonical).digest()
    letters = base64.b32encode(digest[:10]).decode("ascii")
    return f"{facts['listing_id']}-" + "-".join(letters[i : i + 4] for i in range(0, 16, 4))


def parse_code(code: str) -> tuple[int, str] | None:
    """(listing id, the code in its canonical spelling), or None when it cannot be a certificate's code.

    Read off paper, a code arrives in any case, with or without its dashes and spaces, and with 0, 1 or 8 typed
    for the letters O, I, B (base32 has no such digits): the last 16 characters are the letters, the rest the id."""
    cleaned = re.sub(r"[\s\-]+", "", code).upper()
    listing_part, letters = cleaned[:-16], cleaned[-16:].translate(_LOOKALIKES)
    if not _LISTING_ID.match(listing_part) or not _LETTERS.match(letters):
        return None
    listing_id = int(listing_part)
    return listing_id, f"{listing_id}-" + "-".join(letters[i : i + 4] for i in range(0, 16, 4))


class _Certified:
    """A sold listing with everything its certificate shows and its code covers."""

    def __init__(
        self,
        listing: Listing,
        assets: list[Asset],
        registration: Registration,
        bidder: Bidder,
        anchor: JournalEntry | None,
        place: dict[str, str],
    ) -> None:
        self.listing, self.assets, self.registration, self.bidder = listing, assets, registration, bidder
        self.anchor, self.place = anchor, place
        self.code = certificate_code(certificate_facts(listing, assets, bidder, anchor))

    @property
    def in_force(self) -> bool:
        return self.registration.deposit_state != DepositState.FORFEITED.value


async def _certified(session: AsyncSession, listing_id: int) -> _Certified | None:
    listing = await session.get(Listing, listing_id)
    if (
        listing is None
        or listing.status != ListingStatus.SOLD.value
        or listing.winner_registration_id is None
        or listing.closed_at is None
        or listing.final_price_fen is None
    ):
        return None
    registration, bidder = await _winner(session, listing)
    anchor = (
        await session.get(JournalEntry, registration.deposit_entry_id)
        if registration.deposit_entry_id
        else None
    )
    return _Certified(
        listing,
        await _assets(session, listing.id),
        registration,
        bidder,
        anchor,
        await _place(session, listing.village_code),
    )


async def certificate_pdf(session: AsyncSession, listing_id: int, user: User, base_url: str) -> bytes:
    """The village's committee, the area's supervisors, admins and the winning bidder; others get 404."""
    certified = await _certified(session, listing_id)
    if certified is None:
        raise NotFound("交易鉴证书", "certificate")
    if user.role == Role.BIDDER.value:
        if certified.bidder.user_id != user.id:
            raise NotFound("交易鉴证书", "certificate")
    elif not is_official_of(user, certified.listing.village_code):
        raise NotFound("交易鉴证书", "certificate")
    if not certified.in_force:
        raise Conflict(
            "竞得人逾期未签约、保证金已没收，该交易不再出具鉴证书",
            "the winner defaulted; no certificate is issued",
        )
    listing = certified.listing
    return await render_pdf(
        "certificate.html",
        listing=listing,
        certified=certified,
        place=certified.place,
        assets=certified.assets,
        term=_term(listing.term_months),
        premium=premium_percent(listing.starting_price_fen, listing.final_price_fen),
        verify_url=base_url.rstrip("/") + f"/verify/{certified.code}",
        watermark=None,
        generated_at=_now(),
    )


async def _books_check(session: AsyncSession, certified: _Certified) -> schemas.BooksCheck | None:
    """Recompute the village's chain and check the anchor entry in it and the chain in the latest root."""
    anchor = certified.anchor
    if anchor is None:
        return None
    collective = await session.get_one(Collective, anchor.collective_id)
    books = BooksService(session)
    links = await books.chain_links(collective.id, collective.village_code)
    failure = chain.verify_chain(links, collective.chain_length, collective.chain_head)
    entry_in_chain = any(link.entry_id == anchor.id and link.hash == anchor.hash for link in links)
    check = schemas.BooksCheck(
        entry_id=anchor.id,
        seq=anchor.seq,
        entry_date=anchor.entry_date,
        memo=anchor.memo,
        counterparty=anchor.counterparty,
        amount=anchor.total_fen,
        entry_hash=anchor.hash,
        chain_intact=failure is None and entry_in_chain,
        chain_break_seq=failure.seq if failure else None,
        chain_break_reason=failure.reason if failure else None,
    )
    root = await session.scalar(select(LedgerRoot).order_by(LedgerRoot.id.desc()).limit(1))
    if root is None:
        return check
    check.root = schemas.PublishedRoot.model_validate(root)
    leaves = (
        await session.execute(
            select(LedgerRootLeaf.village_code, LedgerRootLeaf.chain_length, LedgerRootLeaf.chain_head)
            .where(LedgerRootLeaf.root_id == root.id)
            .order_by(LedgerRootLeaf.leaf_index)
        )
    ).all()
    index = next((i for i, leaf in enumerate(leaves) if leaf.village_code == collective.village_code), None)
    if index is None:
        return check
    leaf = leaves[index]
    encoded = [chain.leaf_bytes(*row) for row in leaves]
    path = chain.inclusion_proof(index, encoded)
    check.leaf_index, check.leaf_chain_length, check.leaf_chain_head = (
        index,
        leaf.chain_length,
        leaf.chain_head,
    )
    check.audit_path = [node.hex() for node in path]
    check.covered_by_root = leaf.chain_length >= anchor.seq
    # the published head must lie on today's chain: a chain rewritten after publication does not pass
    on_chain = any(link.entry.seq == leaf.chain_length and link.hash == leaf.chain_head for link in links)
    check.inclusion_verified = (
        on_chain
        and len(leaves) == root.tree_size
        and chain.verify_inclusion(encoded[index], index, root.tree_size, path, bytes.fromhex(root.root_hash))
    )
    return check


def _verdict(certified: _Certified, books: schemas.BooksCheck | None) -> tuple[str, str, bool]:
    if not certified.in_force:
        return (
            "该鉴证书记载的交易已失效：竞得人逾期未签约，竞买保证金已没收。",
            "the trade no longer stands: the winner defaulted and the deposit was forfeited",
            False,
        )
    if books is None:
        return (
            "鉴证书与平台成交记录一致；该交易未收取竞买保证金，账簿中没有可供核对的分录。",
            "the certificate matches the platform's record; no deposit entry exists to check in the books",
            False,
        )
    if not books.chain_intact:
        return (
            (
                f"警告：鉴证书与平台成交记录一致，但该村账簿哈希链校验未通过（自第 {books.chain_break_seq} 笔起），"
                "请向镇街监管部门反映。"
            ),
            f"the certificate matches, but the village's hash chain breaks at seq {books.chain_break_seq}",
            False,
        )
    if books.root is None or not books.covered_by_root:
        return (
            (
                "鉴证书与平台成交记录一致，保证金分录在该村账簿哈希链中；该分录尚未纳入已发布的账簿根，"
                "请在下次发布后再核对。"
            ),
            "the certificate matches and its entry is in the chain; no published root covers it yet",
            False,
        )
    if not books.inclusion_verified:
        return (
            "警告：鉴证书与平台成交记录一致，但该村账簿与已发布的账簿根不符，请向镇街监管部门反映。",
            "the certificate matches, but the village's chain does not match the published root",
            False,
        )
    return (
        "真实有效：鉴证书与平台成交记录一致，保证金分录在该村账簿哈希链中，并已纳入已发布的账簿根。",
        "valid: matches the platform's record; its entry is in the village's chain, covered by the published root",
        True,
    )


class CertificateNotFound(NotFound):
    """A code that matches no certificate: mistyped, forged, or of a trade whose record has changed since."""

    def __init__(self) -> None:
        super().__init__("交易鉴证书", "certificate")
        self.message = "验证码无效：平台没有与之相符的交易鉴证书，该鉴证书可能是伪造的或已被篡改"
        self.message_en = "no certificate matches this code: it may be forged or altered"
        self.code = "certificate_not_found"


async def verify_certificate(session: AsyncSession, code: str) -> schemas.CertificateVerification:
    parsed = parse_code(code)
    if parsed is None:
        raise CertificateNotFound()
    listing_id, canonical = parsed
    certified = await _certified(session, listing_id)
    if certified is None or not hmac.compare_digest(certified.code, canonical):
        raise CertificateNotFound()
    books = await _books_check(session, certified)
    verdict, verdict_en, books_verified = _verdict(certified, books)
    listing = certified.listing
    assert listing.closed_at is not None and listing.final_price_fen is not None
    return schemas.CertificateVerification(
        code=certified.code,
        valid=True,
        in_force=certified.in_force,
        books_verified=books_verified,
        verdict=verdict,
        verdict_en=verdict_en,
        listing_id=listing.id,
        number=listing.number,
        title=listing.title,
        assets=[_asset_line(asset) for asset in certified.assets],
        trade_type=listing.trade_type,
        term_months=listing.term_months,
        price_basis=listing.price_basis,
        starting_price=listing.starting_price_fen,
        final_price=listing.final_price_fen,
        winner_name=certified.bidder.name,
        winner_number=certified.registration.bidder_number,
        announced_at=listing.announced_at,
        closed_at=listing.closed_at,
        publicity_ends_at=listing.publicity_ends_at,
        books=books,
        **certified.place,
    )


# ---- HTTP -------------------------------------------------------------------------------------------------

AnyRequest = Request[Any, Any, Any]


def _filename(listing: Listing | None, listing_id: int, kind: str) -> str:
    return f"{listing.number if listing else listing_id}-{kind}.pdf"


class TradingDocumentController(Controller):
    """The trading documents as PDF, and the public check of a certificate (a page and its JSON twin)."""

    include_in_schema = False
    tags = ["documents"]

    @get("/listings/{listing_id:int}/announcement.pdf", operation_id="AnnouncementPdf", opt=PUBLIC)
    async def announcement(
        self, db_session: AsyncSession, request: AnyRequest, listing_id: int
    ) -> Response[bytes]:
        content = await announcement_pdf(db_session, listing_id, request.user)
        listing = await db_session.get(Listing, listing_id)
        private = listing is None or listing.announced_at is None
        return pdf_response(content, _filename(listing, listing_id, "交易公告"), private=private)

    @get("/listings/{listing_id:int}/result.pdf", operation_id="ResultNoticePdf", opt=PUBLIC)
    async def result(self, db_session: AsyncSession, listing_id: int) -> Response[bytes]:
        content = await result_pdf(db_session, listing_id)
        listing = await db_session.get(Listing, listing_id)
        sold = listing is not None and listing.status == ListingStatus.SOLD.value
        return pdf_response(content, _filename(listing, listing_id, "成交公示" if sold else "流拍公告"))

    @get(
        "/listings/{listing_id:int}/certificate.pdf",
        operation_id="CertificatePdf",
        opt=roles(Role.ADMIN, Role.COMMITTEE, Role.SUPERVISOR, Role.BIDDER),
    )
    async def certificate(
        self, db_session: AsyncSession, request: AnyRequest, listing_id: int
    ) -> Response[bytes]:
        base = request.app.state.settings.public_base(str(request.base_url))
        content = await certificate_pdf(db_session, listing_id, request.user, base)
        listing = await db_session.get(Listing, listing_id)
        return pdf_response(content, _filename(listing, listing_id, "交易鉴证书"), private=True)

    @get("/verify", operation_id="VerifyCertificateForm", opt=PUBLIC)
    async def verify_form(self, request: AnyRequest, code: str | None = None) -> Template | Redirect:
        """The form where a villager types a code from a printed certificate."""
        if code and code.strip():
            return Redirect(f"/verify/{quote(code.strip()[:64], safe='')}", status_code=303)
        return _verify_page(request, None, "", None)

    @get("/verify/{code:str}", operation_id="VerifyCertificatePage", opt=PUBLIC)
    async def verify_page(self, db_session: AsyncSession, request: AnyRequest, code: str) -> Template:
        try:
            verification = await verify_certificate(db_session, code)
        except CertificateNotFound as refused:
            return _verify_page(request, None, code[:64], refused.message, status_code=404)
        return _verify_page(request, verification, verification.code, None)


def _verify_page(
    request: AnyRequest,
    verification: schemas.CertificateVerification | None,
    code: str,
    refusal: str | None,
    status_code: int = 200,
) -> Template:
    return page(
        request,
        "verify.html",
        status_code=status_code,
        verification=verification,
        code=code,
        refusal=refusal,
        labels=LABELS,
    )


class VerificationApiController(Controller):
    path = "/api"
    tags = ["documents"]

    @get(
        "/verify/{code:str}",
        operation_id="VerifyCertificate",
        opt=PUBLIC,
        summary="Check a transaction certificate's code against the platform and the published books",
    )
    async def verify(self, db_session: AsyncSession, code: str) -> schemas.CertificateVerification:
        return await verify_certificate(db_session, code)


controllers: list[Any] = [TradingDocumentController, VerificationApiController]
