"""Contracts of a collective: terms, the payment schedule generated from them, receipts posted to the books
and arrears. The schedule is computed by pure functions at the top of this module."""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import raiseload

from sanzi.ledger.models import (
    AreaUnit,
    Asset,
    AssetStatus,
    Contract,
    ContractInstallment,
    ContractOrigin,
    ContractReceipt,
    JournalEntry,
    PriceBasis,
    TradeType,
)
from sanzi.ledger.schemas import contracts as schemas
from sanzi.ledger.schemas.contracts import ContractStatus, PaymentFrequency
from sanzi.ledger.services.assets import AssetService
from sanzi.platform import events
from sanzi.platform.access import check_village
from sanzi.platform.models import Collective, User
from sanzi.platform.money import fen_to_yuan, round_fen
from sanzi.platform.problems import Conflict, DomainError, NotFound
from sanzi.platform.schemas import Page

# ---- the schedule: pure functions ------------------------------------------------------------------------

#: months covered by one installment; "once" covers the whole term
FREQUENCY_MONTHS = {
    PaymentFrequency.ANNUAL: 12,
    PaymentFrequency.SEMIANNUAL: 6,
    PaymentFrequency.QUARTERLY: 3,
    PaymentFrequency.MONTHLY: 1,
}


@dataclass(frozen=True)
class StepUpTerm:
    from_year: int
    percent: Decimal


@dataclass(frozen=True)
class ScheduledInstallment:
    seq: int
    period_start: date
    period_end: date
    due_date: date
    amount_fen: int


def add_months(day: date, months: int) -> date:
    """The same day ``months`` later, clamped to the end of a shorter month (31 Jan + 1 month = 28/29 Feb)."""
    years, month_index = divmod(day.month - 1 + months, 12)
    year, month = day.year + years, month_index + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def contract_end(start: date, term_months: int) -> date:
    """The last day (inclusive) of a term of ``term_months`` from ``start``."""
    return add_months(start, term_months) - timedelta(days=1)


def contract_years(term_months: int) -> int:
    return -(-term_months // 12)


def yearly_amounts(base_fen: Decimal, term_months: int, step_ups: Sequence[StepUpTerm]) -> list[int]:
    """The amount due for each contract year, in fen: the base raised by every step-up from its year on
    (compounding), rounded half-up once per year; a partial last year is pro-rated by its months."""
    amounts = []
    factor = Decimal(1)
    for year in range(1, contract_years(term_months) + 1):
        for step in step_ups:
            if step.from_year == year:
                factor *= 1 + step.percent / 100
        months = min(12, term_months - (year - 1) * 12)
        amounts.append(round_fen(base_fen * factor * months / 12))
    return amounts


def installment_months(term_months: int, frequency: PaymentFrequency) -> list[tuple[int, int]]:
    """The installments as [start, end) month offsets from the start date; the last one may be shorter."""
    step = FREQUENCY_MONTHS.get(frequency, term_months)
    return [(start, min(start + step, term_months)) for start in range(0, term_months, step)]


def split_total(total_fen: int, periods: Sequence[tuple[int, int]], term_months: int) -> list[int]:
    """A total price split over the installments by their months, rounded down, remainder on the last."""
    amounts = [total_fen * (end - start) // term_months for start, end in periods[:-1]]
    return [*amounts, total_fen - sum(amounts)]


def split_yearly(years: Sequence[int], periods: Sequence[tuple[int, int]], term_months: int) -> list[int]:
    """Yearly amounts spread over the installments by months, so that each year's installments sum to it."""

    def accrued(month: int) -> int:  # fen accrued over the first ``month`` months of the term
        year, within = divmod(month, 12)
        done = sum(years[:year])
        if within == 0:
            return done
        months_in_year = min(12, term_months - year * 12)
        return done + round_fen(Decimal(years[year]) * within / months_in_year)

    return [accrued(end) - accrued(start) for start, end in periods]


def build_schedule(
    start: date,
    term_months: int,
    basis: PriceBasis,
    unit_price_fen: int,
    frequency: PaymentFrequency,
    area: Decimal | None = None,
    step_ups: Sequence[StepUpTerm] = (),
) -> list[ScheduledInstallment]:
    """The payment schedule of a contract: rent in advance, each installment due on its period's first day."""
    periods = installment_months(term_months, frequency)
    if basis == PriceBasis.TOTAL:
        amounts = split_total(unit_price_fen, periods, term_months)
    else:
        base = Decimal(unit_price_fen) * (area if basis == PriceBasis.PER_MU_YEAR and area is not None else 1)
        amounts = split_yearly(yearly_amounts(base, term_months, step_ups), periods, term_months)
    return [
        ScheduledInstallment(
            seq=seq,
            period_start=add_months(start, first),
            period_end=add_months(start, last) - timedelta(days=1),
            due_date=add_months(start, first),
            amount_fen=amount,
        )
        for seq, ((first, last), amount) in enumerate(zip(periods, amounts, strict=True), start=1)
    ]


def apply_receipts(amounts: Sequence[int], received_fen: int) -> list[int]:
    """How much of each installment the receipts pay, oldest first."""
    applied = []
    for amount in amounts:
        paid = min(amount, max(received_fen, 0))
        applied.append(paid)
        received_fen -= paid
    return applied


# ---- the service -----------------------------------------------------------------------------------------


def _unknown_asset() -> DomainError:
    return DomainError(
        "资产不存在或不属于本集体", "unknown asset, or an asset of another collective", field="asset_id"
    )


class ContractService:
    """Contracts of one collective: creation with the schedule, reads, receipts and arrears."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # -- creation

    async def create(
        self,
        collective: Collective,
        data: schemas.ContractCreate,
        actor: User,
        *,
        listing_id: int | None = None,
    ) -> Contract:
        """Record a contract and its schedule. Through the API only direct contracts (with a reason) are
        accepted; the trading module passes ``listing_id`` for a contract born of an auction result."""
        if listing_id is None and data.origin == ContractOrigin.AUCTION:
            raise DomainError(
                "平台交易产生的合同由交易模块根据成交结果生成，不能在此录入",
                "auction contracts are created by the trading module from a result, not through this API",
                field="origin",
            )
        origin = ContractOrigin.AUCTION if listing_id is not None else ContractOrigin.DIRECT
        reason = (data.origin_reason or "").strip() or None
        if origin == ContractOrigin.DIRECT and reason is None:
            raise DomainError(
                "未经平台交易直接签订的合同须说明理由",
                "a direct contract (not from an auction) needs a stated reason",
                field="origin_reason",
            )
        asset = await self.session.scalar(select(Asset).where(Asset.id == data.asset_id).with_for_update())
        if asset is None or asset.collective_id != collective.id:
            raise _unknown_asset()
        term_months = self._term_months(data)
        area = self._area(data, asset)
        step_ups = self._step_ups(data, term_months)
        schedule = build_schedule(
            data.start_date,
            term_months,
            data.price_basis,
            data.unit_price,
            data.payment_frequency,
            area,
            step_ups,
        )
        if any(item.amount_fen <= 0 for item in schedule):
            raise DomainError(
                "价格过低：分期后有金额为零的期次",
                "price too small: some installment would be zero",
                field="unit_price",
            )
        if await self.session.scalar(
            select(Contract.id).where(Contract.collective_id == collective.id, Contract.number == data.number)
        ):
            raise Conflict(
                f"合同编号 {data.number} 已存在", f"contract number {data.number} already exists", "number"
            )
        await self._occupy(asset, data, actor)
        contract = Contract(
            collective_id=collective.id,
            village_code=collective.village_code,
            number=data.number,
            asset_id=asset.id,
            trade_type=data.trade_type.value,
            counterparty_name=data.counterparty_name,
            counterparty_id_number=data.counterparty_id_number,
            start_date=data.start_date,
            term_months=term_months,
            end_date=contract_end(data.start_date, term_months),
            price_basis=data.price_basis.value,
            unit_price_fen=data.unit_price,
            area=area,
            step_ups=[{"from_year": s.from_year, "percent": format(s.percent, "f")} for s in step_ups],
            payment_frequency=data.payment_frequency.value,
            total_value_fen=sum(item.amount_fen for item in schedule),
            origin=origin.value,
            origin_reason=reason,
            listing_id=listing_id,
            signed_on=data.signed_on,
            status=ContractStatus.ACTIVE.value,
            created_by_id=actor.id,
            installments=[
                ContractInstallment(
                    seq=item.seq,
                    period_start=item.period_start,
                    period_end=item.period_end,
                    due_date=item.due_date,
                    amount_fen=item.amount_fen,
                )
                for item in schedule
            ],
        )
        self.session.add(contract)
        await self.session.flush()
        await self.session.refresh(contract)
        events.record(self.session, "contract_recorded", collective.village_code, contract_id=contract.id)
        return contract

    @staticmethod
    def _term_months(data: schemas.ContractCreate) -> int:
        given = [
            name for name in ("term_months", "term_years", "end_date") if getattr(data, name) is not None
        ]
        if len(given) != 1:
            raise DomainError(
                "须且只能填写合同期限（月数或年数）或终止日期之一",
                "give exactly one of term_months, term_years or end_date",
                field="term_months",
            )
        if data.term_months is not None:
            return data.term_months
        if data.term_years is not None:
            return data.term_years * 12
        assert data.end_date is not None
        if data.end_date <= data.start_date:
            raise DomainError("终止日期须晚于起始日期", "end_date must be after start_date", field="end_date")
        months = (
            (data.end_date.year - data.start_date.year) * 12 + data.end_date.month - data.start_date.month
        )
        for term in (months, months + 1):
            if term > 0 and contract_end(data.start_date, term) == data.end_date:
                if term > 600:
                    break
                return term
        raise DomainError(
            "合同期限须为整月（终止日期为起始日期满整月的前一天）且不超过50年",
            "the term must be whole months (end_date the day before a monthly anniversary of start_date), "
            "at most 50 years",
            field="end_date",
        )

    @staticmethod
    def _area(data: schemas.ContractCreate, asset: Asset) -> Decimal | None:
        in_mu = asset.area_unit == AreaUnit.MU.value
        if data.area is not None and in_mu and data.area > asset.area:
            raise DomainError(
                f"合同面积超过资产面积（{asset.area} 亩）",
                f"the area exceeds the asset's area ({asset.area} mu)",
                field="area",
            )
        if data.price_basis != PriceBasis.PER_MU_YEAR:
            return data.area
        if data.area is not None:
            return data.area
        if in_mu:
            return Decimal(asset.area)
        raise DomainError(
            "按亩计价须填写面积（亩）：该资产不以亩计量",
            "a per-mu price needs the area in mu: the asset is not measured in mu",
            field="area",
        )

    @staticmethod
    def _step_ups(data: schemas.ContractCreate, term_months: int) -> list[StepUpTerm]:
        if data.step_ups and data.price_basis == PriceBasis.TOTAL:
            raise DomainError(
                "按总价计价的合同不适用递增条款", "step-ups do not apply to a total price", field="step_ups"
            )
        years = contract_years(term_months)
        seen: set[int] = set()
        for index, step in enumerate(data.step_ups):
            if step.from_year > years:
                raise DomainError(
                    f"递增起始年（第{step.from_year}年）超出合同期限（共{years}年）",
                    f"step-up year {step.from_year} is beyond the term ({years} years)",
                    field=f"step_ups[{index}].from_year",
                )
            if step.from_year in seen:
                raise DomainError(
                    f"第{step.from_year}年的递增重复",
                    f"two step-ups from year {step.from_year}",
                    field=f"step_ups[{index}].from_year",
                )
            seen.add(step.from_year)
        return sorted((StepUpTerm(s.from_year, s.percent) for s in data.step_ups), key=lambda s: s.from_year)

    async def _occupy(self, asset: Asset, data: schemas.ContractCreate, actor: User) -> None:
        """Mark the asset leased (or sold, for a transfer) as the contract says, in its status history."""
        status = AssetStatus(asset.status)
        target = AssetStatus.SOLD if data.trade_type == TradeType.TRANSFER else AssetStatus.LEASED
        if status in (AssetStatus.SOLD, AssetStatus.DISPOSED):
            raise DomainError(
                "该资产已转让或处置，不能再签订合同",
                f"the asset is {status.value} and cannot be contracted",
                field="asset_id",
            )
        if status == target == AssetStatus.LEASED:
            return  # another part of an asset already leased
        if target == AssetStatus.SOLD and status != AssetStatus.LISTED:
            raise DomainError(
                "资产转让须先挂牌交易",
                "an asset must be listed before it can be transferred",
                field="trade_type",
            )
        if status == AssetStatus.LEASED:
            raise DomainError(
                "该资产正在出租中，须先终止租约才能转让",
                "the asset is leased; end the lease before transferring it",
                field="asset_id",
            )
        await AssetService(self.session).change_status(asset, target, f"签订合同 {data.number}", actor)

    # -- reads

    async def get(
        self, contract_id: int, user: User | None, *, write: bool = False, lock: bool = False
    ) -> Contract:
        query = select(Contract).where(Contract.id == contract_id)
        if lock:
            query = query.with_for_update()
        contract = await self.session.scalar(query)
        if contract is None:
            raise NotFound("合同", "contract")
        check_village(user, contract.village_code, write=write)
        return contract

    async def list(
        self,
        collective: Collective,
        status: ContractStatus | None,
        asset_id: int | None,
        counterparty: str | None,
        page: int,
        page_size: int,
    ) -> Page[schemas.ContractSummary]:
        conditions: list[Any] = [Contract.collective_id == collective.id]
        if status:
            conditions.append(Contract.status == status.value)
        if asset_id is not None:
            conditions.append(Contract.asset_id == asset_id)
        if counterparty:
            pattern = "%" + counterparty.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            conditions.append(
                Contract.counterparty_name.ilike(pattern, escape="\\")
                | (Contract.counterparty_id_number == counterparty.upper())
            )
        total = await self.session.scalar(select(func.count()).select_from(Contract).where(*conditions)) or 0
        rows = await self.session.scalars(
            select(Contract)
            .options(raiseload(Contract.installments))
            .where(*conditions)
            .order_by(Contract.signed_on.desc(), Contract.id.desc())
            .offset((page - 1) * page_size)
            .limit(page_size)
        )
        items = [schemas.ContractSummary.model_validate(c) for c in rows]
        return Page(items=items, total=total, page=page, page_size=page_size)

    async def _received(self, contract_id: int, as_of: date | None = None) -> int:
        query = select(func.coalesce(func.sum(ContractReceipt.amount_fen), 0)).where(
            ContractReceipt.contract_id == contract_id
        )
        if as_of is not None:
            query = query.where(ContractReceipt.received_on <= as_of)
        return int(await self.session.scalar(query) or 0)

    async def schedule(self, contract_id: int, user: User | None, as_of: date) -> schemas.Schedule:
        """Each installment, what receipts up to ``as_of`` paid of it (oldest first), and if it is overdue."""
        contract = await self.get(contract_id, user)
        received = await self._received(contract.id, as_of)
        installments = contract.installments
        applied = apply_receipts([i.amount_fen for i in installments], received)
        lines = [
            schemas.ScheduleLine(
                seq=item.seq,
                period_start=item.period_start,
                period_end=item.period_end,
                due_date=item.due_date,
                amount=item.amount_fen,
                received=paid,
                outstanding=item.amount_fen - paid,
                overdue=item.due_date < as_of and paid < item.amount_fen,
            )
            for item, paid in zip(installments, applied, strict=True)
        ]
        return schemas.Schedule(
            contract_id=contract.id,
            number=contract.number,
            as_of=as_of,
            total_value=contract.total_value_fen,
            received=received,
            outstanding=contract.total_value_fen - sum(applied),
            overdue=sum(line.outstanding for line in lines if line.overdue),
            installments=lines,
        )

    async def arrears(self, collective: Collective, as_of: date) -> schemas.Arrears:
        """Contracts whose installments due before ``as_of`` exceed their receipts, by SQL aggregates."""
        in_collective = ContractInstallment.contract_id.in_(
            select(Contract.id).where(Contract.collective_id == collective.id).scalar_subquery()
        )
        cumulative = (
            select(
                ContractInstallment.contract_id,
                ContractInstallment.due_date,
                func.sum(ContractInstallment.amount_fen)
                .over(partition_by=ContractInstallment.contract_id, order_by=ContractInstallment.seq)
                .label("cumulative"),
            )
            .where(in_collective, ContractInstallment.due_date < as_of)
            .subquery()
        )
        received = (
            select(ContractReceipt.contract_id, func.sum(ContractReceipt.amount_fen).label("received"))
            .join(Contract, Contract.id == ContractReceipt.contract_id)
            .where(Contract.collective_id == collective.id, ContractReceipt.received_on <= as_of)
            .group_by(ContractReceipt.contract_id)
            .subquery()
        )
        paid = func.coalesce(received.c.received, 0)
        rows = await self.session.execute(
            select(
                Contract.id,
                Contract.number,
                Contract.counterparty_name,
                Contract.asset_id,
                func.max(cumulative.c.cumulative).label("due"),
                func.max(paid).label("received"),
                # the oldest installment the receipts have not fully paid
                func.min(cumulative.c.due_date).filter(cumulative.c.cumulative > paid).label("oldest"),
            )
            .join(cumulative, cumulative.c.contract_id == Contract.id)
            .outerjoin(received, received.c.contract_id == Contract.id)
            .group_by(Contract.id, Contract.number, Contract.counterparty_name, Contract.asset_id)
            .having(func.max(cumulative.c.cumulative) > func.max(paid))
            .order_by((func.max(cumulative.c.cumulative) - func.max(paid)).desc(), Contract.number)
        )
        lines = [
            schemas.ArrearsLine(
                contract_id=row.id,
                number=row.number,
                counterparty_name=row.counterparty_name,
                asset_id=row.asset_id,
                due=int(row.due),
                received=int(row.received),
                overdue=int(row.due) - int(row.received),
                oldest_due_date=row.oldest,
            )
            for row in rows
        ]
        return schemas.Arrears(
            village_code=collective.village_code,
            as_of=as_of,
            total_overdue=sum(line.overdue for line in lines),
            contracts=lines,
        )

    # -- receipts

    async def receive(
        self, contract_id: int, data: schemas.ReceiptCreate, actor: User, today: date
    ) -> tuple[ContractReceipt, bool]:
        """Post a receipt to the books (Dr bank or cash / Cr contracting income) and record it.

        A repeated ``client_key`` with the same body returns the first receipt (``created`` False).
        """
        from sanzi.ledger.schemas.books import EntryCreate, LineIn
        from sanzi.ledger.services.books import BooksService

        contract = await self.get(contract_id, actor, write=True, lock=True)
        collective = await self.session.get_one(Collective, contract.collective_id)
        amount = fen_to_yuan(data.amount)
        entry_data = EntryCreate(
            entry_date=data.received_on,
            memo=f"收取合同 {contract.number} 款项",
            counterparty=contract.counterparty_name,
            client_key=data.client_key,
            lines=[
                LineIn(account_code="102" if data.account == "bank" else "101", debit=amount),
                LineIn(account_code="50101", credit=amount, memo=f"合同 {contract.number}"),
            ],
        )
        replay = data.client_key is not None and await self.session.scalar(
            select(JournalEntry.id).where(
                JournalEntry.collective_id == collective.id, JournalEntry.client_key == data.client_key
            )
        )
        if not replay:
            if data.received_on > today:
                raise DomainError(
                    "收款日期不能晚于今天", "received_on cannot be in the future", field="received_on"
                )
            outstanding = contract.total_value_fen - await self._received(contract.id)
            if data.amount > outstanding:
                raise DomainError(
                    f"收款金额超过合同未收金额（{fen_to_yuan(outstanding)} 元）",
                    f"the amount exceeds what the contract still owes ({fen_to_yuan(outstanding)} yuan)",
                    field="amount",
                )
        entry, created = await BooksService(self.session).post_entry(
            collective, entry_data, actor, source="contract_receipt"
        )
        if not created:
            receipt = await self.session.scalar(
                select(ContractReceipt).where(ContractReceipt.entry_id == entry.id)
            )
            if receipt is None or receipt.contract_id != contract.id:
                raise Conflict(
                    "该幂等键已用于其他凭证", "this client_key was used for another entry", field="client_key"
                )
            return receipt, False
        receipt = ContractReceipt(
            contract_id=contract.id,
            entry_id=entry.id,
            amount_fen=data.amount,
            received_on=data.received_on,
            created_at=datetime.now(UTC),
        )
        self.session.add(receipt)
        await self.session.flush()
        return receipt, True
