"""Trading documents through HTTP: the announcement, the result notice and the transaction certificate as PDFs
(their Chinese titles and key figures read back with pypdf, a page of each saved as PNG), who may fetch them,
and the public verification of a certificate, forged or altered codes included."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from sanzi.auction.documents import parse_code
from sanzi.auction.models import Listing, ListingStatus, Registration
from sanzi.auction.services.bidding import place_bid
from sanzi.auction.services.results import close_listing
from sanzi.ledger.models import JournalEntry, LedgerRoot
from sanzi.platform.app import create_app
from sanzi.platform.models import Village
from tests.auction.factories import LiveListing, make_live_listing
from tests.conftest import VILLAGE_A, Actor, make_settings, serve
from tests.platform.pdfs import browse_as, pdf_text, save_png

CODE = re.compile(r"鉴证编号：(\d+-[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4})")
# a bidding window in the past, so that the listing can be closed at once; 2026-03-02 10:00 in Shanghai
START = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)


async def disable_immutability(db: AsyncSession, backend: str) -> None:
    """Get past the books' immutability triggers inside this test's transaction (all of it is rolled back)."""
    if backend == "postgres":
        await db.execute(text("SET LOCAL session_replication_role = replica"))
    else:
        await db.execute(text("DROP TRIGGER journal_entry_no_update"))


async def village_name(db: AsyncSession, code: str = VILLAGE_A) -> str:
    name = await db.scalar(select(Village.name).where(Village.code == code))
    assert name
    return name


async def sold(db: AsyncSession) -> LiveListing:
    """Two bidders, 100,000.00 then 104,500.00 yuan a year; closed at 2026-03-02 11:30 Shanghai time."""
    live = await make_live_listing(
        db, bidders=2, now=START, starts_in=timedelta(0), ends_in=timedelta(hours=1)
    )
    await place_bid(db, live.id, live.bidders[0].bidder, 100_000_00, "b1", START + timedelta(minutes=1))
    await place_bid(db, live.id, live.bidders[1].bidder, 104_500_00, "b2", START + timedelta(minutes=2))
    await close_listing(db, live.id, START + timedelta(hours=1, minutes=30))
    return live


async def test_announcement_is_public_once_announced_and_a_draft_only_for_its_officials(
    client: httpx.AsyncClient, db: AsyncSession, committee_a: Actor, committee_b: Actor
) -> None:
    live = await make_live_listing(
        db,
        bidders=0,
        now=START,
        status=ListingStatus.ANNOUNCED,
        starts_in=timedelta(days=1),
        ends_in=timedelta(days=1, hours=2),
        reserve_price_fen=123_456_78,
    )
    response = await client.get(f"/listings/{live.id}/announcement.pdf")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    assert "filename*=UTF-8''" in response.headers["content-disposition"]
    text = pdf_text(response.content)
    assert "交易公告" in text and live.listing.number in text
    assert await village_name(db) in text and "龙归街道" in text and "白云区" in text
    assert "100,000.00元" in text and "1,000.00元" in text and "5,000.00元" in text  # start, increments
    assert "10,000.00元" in text  # the deposit
    # times in Shanghai: bidding opens 2026-03-03 10:00 there (02:00 UTC)
    assert "2026-03-0310:00" in text
    assert "123,456.78" not in text and "草稿" not in text  # the secret reserve never prints
    save_png(response.content, "announcement")

    # a draft: its own committee previews it, marked as such; the public and other villages do not see it
    await db.execute(
        update(Listing).where(Listing.id == live.id).values(announced_at=None, status="approved")
    )
    await db.commit()
    assert (await client.get(f"/listings/{live.id}/announcement.pdf")).status_code == 404
    await browse_as(client, committee_b.user.username)
    assert (await client.get(f"/listings/{live.id}/announcement.pdf")).status_code == 404
    await browse_as(client, committee_a.user.username)
    draft = await client.get(f"/listings/{live.id}/announcement.pdf")
    assert draft.status_code == 200, draft.text
    assert "草稿·未公告" in pdf_text(draft.content)
    assert draft.headers["cache-control"].startswith("private")
    assert (await client.get("/listings/999999999/announcement.pdf")).status_code == 404


async def test_result_notice_for_a_sale_and_for_a_failure(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    live = await sold(db)
    response = await client.get(f"/listings/{live.id}/result.pdf")
    assert response.status_code == 200, response.text
    text = pdf_text(response.content)
    assert "成交公示" in text and live.listing.number in text and await village_name(db) in text
    assert "104,500.00元" in text and "4.50%" in text  # the price and the premium over 100,000.00
    assert live.bidders[1].bidder.name in text and live.bidders[1].number in text
    assert "2026-03-0211:30" in text  # closed 03:30 UTC = 11:30 in Shanghai
    assert "共出价2次" in text
    save_png(response.content, "result")

    failed = await make_live_listing(
        db, bidders=1, now=START, starts_in=timedelta(0), ends_in=timedelta(hours=1)
    )
    await close_listing(db, failed.id, START + timedelta(hours=2))
    notice = pdf_text((await client.get(f"/listings/{failed.id}/result.pdf")).content)
    assert "流拍公告" in notice and "无人出价" in notice and "成交公示" not in notice

    still_bidding = await make_live_listing(db, bidders=1)
    assert (await client.get(f"/listings/{still_bidding.id}/result.pdf")).status_code == 404


async def test_certificate_for_the_village_the_area_and_the_winner_only(
    client: httpx.AsyncClient,
    db: AsyncSession,
    admin: Actor,
    committee_a: Actor,
    committee_b: Actor,
    supervisor_a: Actor,
    supervisor_b: Actor,
) -> None:
    live = await sold(db)
    path = f"/listings/{live.id}/certificate.pdf"
    winner, loser = live.bidders[1], live.bidders[0]
    for user in (committee_b.user, supervisor_b.user, loser.user):
        await browse_as(client, user.username)
        assert (await client.get(path)).status_code == 404, user.username
    await browse_as(client, None)
    anonymous = await client.get(path, follow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login?next=")
    await browse_as(client, admin.user.username)
    unsold = await make_live_listing(db, bidders=1)
    assert (await client.get(f"/listings/{unsold.id}/certificate.pdf")).status_code == 404
    for user in (admin.user, committee_a.user, supervisor_a.user, winner.user):
        await browse_as(client, user.username)
        response = await client.get(path)
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "private, no-store"

    text = pdf_text(response.content)
    assert "交易鉴证书" in text and live.listing.number in text and await village_name(db) in text
    assert "104,500.00元" in text and winner.bidder.name in text
    id_number = winner.bidder.id_number
    assert id_number not in text and f"{id_number[:4]}**********{id_number[-4:]}" in text
    entry = await db.get(JournalEntry, winner.registration.deposit_entry_id)
    assert entry is not None and entry.hash in text  # the books entry the certificate rests on
    match = CODE.search(text)
    assert match, text
    assert f"http://testserver.local/verify/{match.group(1)}" in text or f"/verify/{match.group(1)}" in text
    save_png(response.content, "certificate")


async def test_a_certificates_qr_address_is_the_public_one_when_configured(
    db: AsyncSession,
    database_url: str,
    engine: AsyncEngine,
    session_maker: async_sessionmaker[AsyncSession],
    tmp_path: Any,
    admin: Actor,
) -> None:
    """Behind a proxy or reached by an intranet name, the server's own address is not the one a villager can
    open: with SANZI_PUBLIC_URL the printed verification address (and its QR code) is the public site's."""
    live = await sold(db)
    settings = make_settings(
        database_url, SANZI_VAR_DIR=str(tmp_path), SANZI_PUBLIC_URL="https://sanzi.example.gov.cn/portal/"
    )
    async with serve(create_app(settings, engine, session_maker)) as client:
        await browse_as(client, admin.user.username)
        response = await client.get(f"/listings/{live.id}/certificate.pdf")
    assert response.status_code == 200, response.text
    text_ = pdf_text(response.content)
    match = CODE.search(text_)
    assert match, text_
    assert f"https://sanzi.example.gov.cn/portal/verify/{match.group(1)}" in text_
    assert "testserver.local" not in text_


async def test_a_certificate_verifies_against_the_published_books(
    client: httpx.AsyncClient, db: AsyncSession, admin: Actor, committee_a: Actor
) -> None:
    live = await sold(db)
    await browse_as(client, committee_a.user.username)
    certificate = await client.get(f"/listings/{live.id}/certificate.pdf")
    match = CODE.search(pdf_text(certificate.content))
    assert match
    code = match.group(1)

    # before any root covers the deposit entry: the trade matches, the books wait for the next publication
    before = (await client.get(f"/api/verify/{code}")).json()
    assert before["valid"] is True and before["books_verified"] is False
    assert before["books"]["chain_intact"] is True and before["books"]["covered_by_root"] is False

    assert (await client.post("/api/ledger/roots", headers=admin.headers)).status_code == 201
    response = await client.get(f"/api/verify/{code}")
    assert response.status_code == 200, response.text
    verification = response.json()
    assert verification["valid"] and verification["in_force"] and verification["books_verified"]
    assert (
        verification["final_price"] == "104500.00"
        and verification["winner_name"] == live.bidders[1].bidder.name
    )
    assert verification["village_code"] == VILLAGE_A and verification["number"] == live.listing.number
    books = verification["books"]
    entry = await db.get(JournalEntry, live.bidders[1].registration.deposit_entry_id)
    assert entry is not None and books["entry_hash"] == entry.hash and books["seq"] == entry.seq
    root = await db.scalar(select(LedgerRoot).order_by(LedgerRoot.id.desc()).limit(1))
    assert root is not None and books["root"]["root_hash"] == root.root_hash
    assert books["covered_by_root"] and books["inclusion_verified"] and books["audit_path"]

    page = await client.get(f"/verify/{code}")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "真实有效" in page.text and "¥104,500.00" in page.text and root.root_hash in page.text
    # lower case and spaces as someone types them off paper still find it
    assert (await client.get(f"/api/verify/{code.lower().replace('-', ' ', 2)}")).status_code == 200
    listing_part, letters = code.split("-", 1)  # 0, 1 and 8 typed for O, I and B (base32 has no such digits)
    typed = listing_part + "-" + letters.replace("O", "0").replace("I", "1").replace("B", "8")
    assert (await client.get(f"/api/verify/{typed}")).json()["code"] == code
    form = await client.get("/verify", params={"code": f" {code} "}, follow_redirects=False)
    assert form.status_code == 303 and form.headers["location"] == f"/verify/{code}"
    assert (await client.get("/verify")).status_code == 200


async def test_forged_and_altered_certificates_say_so(
    client: httpx.AsyncClient, db: AsyncSession, admin: Actor, committee_a: Actor, backend: str
) -> None:
    live = await sold(db)
    await browse_as(client, committee_a.user.username)
    certificate = await client.get(f"/listings/{live.id}/certificate.pdf")
    match = CODE.search(pdf_text(certificate.content))
    assert match
    code = match.group(1)
    last = code[-1]
    forged = code[:-1] + ("A" if last != "A" else "B")
    for candidate in (forged, f"{live.id + 1000}{code[len(str(live.id)) :]}", "not-a-code", "12345"):
        api = await client.get(f"/api/verify/{candidate}")
        assert api.status_code == 404, candidate
        assert api.json()["detail"].startswith("验证码无效") and "伪造" in api.json()["detail"]
        page = await client.get(f"/verify/{candidate}")
        assert page.status_code == 404 and "该鉴证书可能是伪造的或已被篡改" in page.text

    # the record altered after printing: the printed code no longer matches
    await db.execute(update(Listing).where(Listing.id == live.id).values(final_price_fen=90_000_00))
    await db.commit()
    assert (await client.get(f"/api/verify/{code}")).status_code == 404
    await db.execute(update(Listing).where(Listing.id == live.id).values(final_price_fen=104_500_00))
    await db.commit()
    assert (await client.get(f"/api/verify/{code}")).status_code == 200

    # the books altered behind the platform's back: the deposit entry's memo rewritten without its hash
    entry_id = live.bidders[1].registration.deposit_entry_id
    await disable_immutability(db, backend)
    await db.execute(update(JournalEntry).where(JournalEntry.id == entry_id).values(memo="改过的摘要"))
    await db.commit()
    tampered = (await client.get(f"/api/verify/{code}")).json()
    assert tampered["valid"] is True and tampered["books_verified"] is False
    assert (
        tampered["books"]["chain_intact"] is False
        and tampered["books"]["chain_break_reason"] == "hash_mismatch"
    )
    assert "哈希链校验未通过" in tampered["verdict"]
    assert "哈希链校验未通过" in (await client.get(f"/verify/{code}")).text


async def test_a_forfeited_trade_gets_no_certificate_and_its_code_says_it_lapsed(
    client: httpx.AsyncClient, db: AsyncSession, committee_a: Actor
) -> None:
    live = await sold(db)
    await browse_as(client, committee_a.user.username)
    certificate = await client.get(f"/listings/{live.id}/certificate.pdf")
    match = CODE.search(pdf_text(certificate.content))
    assert match
    registrations = await db.scalar(select(func.count()).select_from(Registration))
    await db.execute(
        update(Registration)
        .where(Registration.id == live.bidders[1].registration.id)
        .values(deposit_state="forfeited")
    )
    await db.commit()
    refused = await client.get(f"/listings/{live.id}/certificate.pdf")
    assert refused.status_code == 409 and "保证金已没收" in refused.text
    verification = (await client.get(f"/api/verify/{match.group(1)}")).json()
    assert verification["in_force"] is False and "已失效" in verification["verdict"]
    assert await db.scalar(select(func.count()).select_from(Registration)) == registrations


def test_codes_typed_off_paper_are_read_back() -> None:
    canonical = (12, "12-2ABC-DEFG-HJKL-MNOP")
    for typed in (
        "12-2ABC-DEFG-HJKL-MNOP",
        "12 2abc defg hjkl mnop",
        "122ABCDEFGHJKLMNOP",
        "12-2A8C-DEFG-HJKL-MN0P",
    ):
        assert parse_code(typed) == canonical, typed
    for wrong in (
        "",
        "12",
        "12-ABC",
        "ABCD-2ABC-DEFG-HJKL-MNOP",
        "12-2ABC-DEFG-HJKL-MNO9",
        "1234567890123-2ABCDEFGHJKLMNOP",
    ):
        assert parse_code(wrong) is None, wrong
