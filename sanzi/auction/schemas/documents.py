"""What the public verification of a transaction certificate (交易鉴证书) answers."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import Field

from sanzi.platform.money import YuanOut
from sanzi.platform.schemas import Schema


class PublishedRoot(Schema):
    id: int
    root_hash: str
    tree_size: int
    published_at: datetime


class BooksCheck(Schema):
    """The winner's deposit entry in the village's hash chain, and that chain's place in the published root.

    Offline check: recompute the chain from the village's entries (``/api/villages/{code}/entries``), then the
    leaf (village code ‖ chain length ‖ chain head) and the RFC 6962 audit path up to ``root.root_hash``.
    """

    entry_id: int
    seq: int
    entry_date: date
    memo: str
    counterparty: str | None
    amount: YuanOut
    entry_hash: str
    #: the whole chain of the village recomputes, entry by entry, to its stored head
    chain_intact: bool
    chain_break_seq: int | None = None
    chain_break_reason: str | None = None
    #: the latest published root (null before the first publication)
    root: PublishedRoot | None = None
    #: the root covers this entry: the village's leaf in it has at least ``seq`` entries
    covered_by_root: bool = False
    leaf_index: int | None = None
    leaf_chain_length: int | None = None
    leaf_chain_head: str | None = None
    audit_path: list[str] = Field(default_factory=list)
    #: the audit path leads from the village's leaf to the published root hash
    inclusion_verified: bool = False


class CertificateVerification(Schema):
    """A certificate's code checked against the platform's records and the published books."""

    code: str
    #: the code matches a transaction recorded on the platform, as it stands now
    valid: bool
    #: the trade still stands (false once the winner defaulted and the deposit was forfeited)
    in_force: bool
    #: the books check passed all the way to a published root
    books_verified: bool
    verdict: str
    verdict_en: str
    listing_id: int
    number: str
    title: str
    village_code: str
    village_name: str
    township_name: str
    district_name: str
    collective_name: str
    assets: list[str]
    trade_type: str
    term_months: int
    price_basis: str
    starting_price: YuanOut
    final_price: YuanOut
    winner_name: str
    winner_number: str | None
    announced_at: datetime | None
    closed_at: datetime
    publicity_ends_at: datetime | None
    books: BooksCheck | None
