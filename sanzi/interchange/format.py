"""The interchange format, version 1: one file per kind of record, its columns and their types.

Every file is a table of flat records, written either as CSV (UTF-8, a header row) or as JSON Lines (one
object per line, the same keys). Records are keyed by the source system's own ids (any text up to 100
characters) and refer to each other by those ids; villages are referred to by their 12-digit statistical
codes. Money is integer fen, dates ``YYYY-MM-DD``, times ISO 8601 (without an offset: Asia/Shanghai). The
columns here are the single source of truth: the validator, loader, exporter and docs/import-format.md
follow them.
"""

from __future__ import annotations

from dataclasses import dataclass

from sanzi.auction.models import DepositState, RegistrationStatus
from sanzi.ledger.models import AreaUnit, AssetKind, AssetStatus, ContractOrigin, PriceBasis, TradeType
from sanzi.ledger.schemas.contracts import ContractStatus, PaymentFrequency

FORMAT_NAME = "sanzi-interchange"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
EXTENSIONS = (".csv", ".jsonl")

# column types
TEXT, CODE, DATE, DATETIME, FEN, INT, DECIMAL, CHOICE, REF, REFS, JSON = (
    "text",
    "village_code",
    "date",
    "datetime",
    "fen",
    "int",
    "decimal",
    "choice",
    "ref",
    "refs",
    "json",
)


@dataclass(frozen=True)
class Column:
    """One column: its type, whether it must have a value, and its limits."""

    name: str
    type: str = TEXT
    required: bool = False
    max_length: int | None = None
    choices: tuple[str, ...] = ()
    #: the kind a REF or REFS column points to
    ref: str | None = None
    #: the value when the column is absent or empty
    default: str | None = None
    #: a FEN or INT column that must be more than zero
    positive: bool = False


@dataclass(frozen=True)
class FileSpec:
    """One kind of record and the file that holds it."""

    kind: str
    title_zh: str
    columns: tuple[Column, ...]
    #: book entries: several rows (one per line) share one id
    multi_row: bool = False

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    @property
    def depends_on(self) -> set[str]:
        return {c.ref for c in self.columns if c.ref and c.ref != self.kind}


def _values(enum: type) -> tuple[str, ...]:
    return tuple(member.value for member in enum)  # type: ignore[attr-defined]


ID = Column("id", required=True, max_length=100)
VILLAGE = Column("village_code", CODE, required=True)

SPECS: tuple[FileSpec, ...] = (
    FileSpec(
        "cadres",
        "村干部",
        (
            ID,
            VILLAGE,
            Column("name", required=True, max_length=64),
            Column("id_number", max_length=18),
            Column("phone", max_length=32),
            Column("body", CHOICE, required=True, choices=("committee", "party_branch")),
            Column("position", required=True, max_length=32),
            Column("term_start", DATE, required=True),
            Column("term_end", DATE),
        ),
    ),
    FileSpec(
        "cadre_relatives",
        "干部申报的亲属",
        (
            ID,
            Column("cadre_id", REF, required=True, ref="cadres"),
            Column("name", required=True, max_length=64),
            Column("id_number", max_length=18),
            Column("relation", required=True, max_length=16),
        ),
    ),
    FileSpec(
        "elections",
        "换届选举",
        (
            ID,
            VILLAGE,
            Column("election_date", DATE, required=True),
            Column("note", max_length=500),
        ),
    ),
    FileSpec(
        "candidates",
        "候选人",
        (
            ID,
            Column("election_id", REF, required=True, ref="elections"),
            Column("name", required=True, max_length=64),
            Column("id_number", max_length=18),
            Column("position", required=True, max_length=32),
        ),
    ),
    FileSpec(
        "assets",
        "资产资源",
        (
            ID,
            VILLAGE,
            Column("code", required=True, max_length=32),
            Column("name", required=True, max_length=100),
            Column("kind", CHOICE, required=True, choices=_values(AssetKind)),
            Column("area", DECIMAL, required=True),
            Column("area_unit", CHOICE, required=True, choices=_values(AreaUnit)),
            Column("location", required=True, max_length=200),
            Column("book_value_fen", FEN, required=True),
            Column("appraisal_fen", FEN),
            Column("appraised_on", DATE),
            Column("status", CHOICE, required=True, choices=_values(AssetStatus)),
            Column("description", max_length=1000),
        ),
    ),
    FileSpec(
        "bidders",
        "竞买人",
        (
            ID,
            Column("kind", CHOICE, required=True, choices=("person", "company")),
            Column("name", required=True, max_length=100),
            Column("id_number", required=True, max_length=18),
            Column("legal_representative", max_length=64),
            Column("phone", required=True, max_length=32),
            Column("address", max_length=200),
            Column("bank_name", max_length=100),
            Column("bank_account", max_length=40),
        ),
    ),
    FileSpec(
        "listings",
        "历史交易项目",
        (
            ID,
            VILLAGE,
            Column("number", required=True, max_length=40),
            Column("title", required=True, max_length=200),
            Column("asset_ids", REFS, required=True, ref="assets"),
            Column("trade_type", CHOICE, required=True, choices=_values(TradeType)),
            Column("term_months", INT, required=True, positive=True),
            Column("price_basis", CHOICE, required=True, choices=_values(PriceBasis)),
            Column("area", DECIMAL),
            Column("starting_price_fen", FEN, required=True, positive=True),
            Column("reserve_price_fen", FEN, positive=True),
            Column("min_increment_fen", FEN, required=True, positive=True),
            Column("max_increment_fen", FEN, required=True, positive=True),
            Column("deposit_fen", FEN, required=True),
            Column("performance_bond_fen", FEN, default="0"),
            Column("announcement_days", INT, required=True, positive=True),
            Column("announced_at", DATETIME, required=True),
            Column("registration_deadline", DATETIME, required=True),
            Column("bidding_starts_at", DATETIME, required=True),
            Column("bidding_ends_at", DATETIME, required=True),
            Column("closed_at", DATETIME),
            Column("status", CHOICE, required=True, choices=("sold", "failed", "terminated")),
            Column("status_reason", max_length=1000),
            Column("winner_applicant_id", REF, ref="applicants"),
            Column("final_price_fen", FEN, positive=True),
            Column("resolution_meeting_date", DATE),
            Column("resolution_present", INT),
            Column("resolution_votes_for", INT),
            Column("resolution_votes_against", INT),
        ),
    ),
    FileSpec(
        "applicants",
        "报名竞买人（含保证金）",
        (
            ID,
            Column("listing_id", REF, required=True, ref="listings"),
            Column("bidder_id", REF, required=True, ref="bidders"),
            Column("bidder_number", max_length=16),
            Column("status", CHOICE, required=True, choices=_values(RegistrationStatus)),
            Column("contact_phone", required=True, max_length=32),
            Column("contact_address", max_length=200),
            Column("applied_ip", max_length=64),
            Column("applied_device", max_length=128),
            Column("deposit_state", CHOICE, default="none", choices=_values(DepositState)),
            Column("deposit_payer_name", max_length=100),
            Column("deposit_payer_account", max_length=40),
            Column("deposit_paid_at", DATETIME),
        ),
    ),
    FileSpec(
        "bids",
        "出价记录",
        (
            ID,
            Column("listing_id", REF, required=True, ref="listings"),
            Column("applicant_id", REF, required=True, ref="applicants"),
            Column("seq", INT, required=True, positive=True),
            Column("amount_fen", FEN, required=True, positive=True),
            Column("placed_at", DATETIME, required=True),
            Column("ip_address", max_length=64),
            Column("device_fingerprint", max_length=128),
        ),
    ),
    FileSpec(
        "contracts",
        "合同",
        (
            ID,
            VILLAGE,
            Column("number", required=True, max_length=40),
            Column("asset_id", REF, ref="assets"),
            Column("trade_type", CHOICE, required=True, choices=_values(TradeType)),
            Column("counterparty_name", required=True, max_length=100),
            Column("counterparty_id_number", max_length=18),
            Column("counterparty_bidder_id", REF, ref="bidders"),
            Column("start_date", DATE, required=True),
            Column("term_months", INT, required=True, positive=True),
            Column("price_basis", CHOICE, required=True, choices=_values(PriceBasis)),
            Column("unit_price_fen", FEN, required=True, positive=True),
            Column("area", DECIMAL),
            Column("step_ups", JSON, default="[]"),
            Column("payment_frequency", CHOICE, required=True, choices=_values(PaymentFrequency)),
            Column("origin", CHOICE, required=True, choices=_values(ContractOrigin)),
            Column("origin_reason", max_length=500),
            Column("listing_id", REF, ref="listings"),
            Column("signed_on", DATE, required=True),
            Column("status", CHOICE, default="active", choices=_values(ContractStatus)),
        ),
    ),
    FileSpec(
        "book_entries",
        "记账凭证（每行一条分录）",
        (
            ID,
            VILLAGE,
            Column("entry_date", DATE, required=True),
            Column("memo", required=True, max_length=500),
            Column("counterparty", max_length=100),
            Column("source", default="import", max_length=32),
            Column("contract_id", REF, ref="contracts"),
            Column("reverses_id", REF, ref="book_entries"),
            Column("line_no", INT, required=True, positive=True),
            Column("account_code", required=True, max_length=16),
            Column("category", max_length=32),
            Column("debit_fen", FEN, default="0"),
            Column("credit_fen", FEN, default="0"),
            Column("line_memo", max_length=200),
        ),
        multi_row=True,
    ),
)

SPEC_BY_KIND = {spec.kind: spec for spec in SPECS}
#: the order files are checked and loaded in (every kind after the kinds it refers to; applicants and the
#: listing's winner refer to each other, and the listing is written first)
KIND_ORDER = tuple(spec.kind for spec in SPECS)
