"""Supervision documents: an alert's case file (预警处置单) and the monthly township supervision report
(镇街三资监管月报) with its tables and charts (pygal SVG, drawn into the PDF by WeasyPrint)."""

from __future__ import annotations

import inspect
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, time
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pygal
from litestar import Controller, Request, Response, get
from markupsafe import Markup
from pygal.style import Style
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.auction.models import Listing, ListingStatus, Registration
from sanzi.ledger.models import Asset, Contract, JournalEntry
from sanzi.platform.auth import roles
from sanzi.platform.documents import CJK_FONT_FAMILIES, label, pdf_response, render_pdf
from sanzi.platform.geography import normalise_code
from sanzi.platform.models import Bidder, Collective, Role, Township, User, Village
from sanzi.platform.problems import Forbidden, NotFound
from sanzi.platform.settings import get_settings
from sanzi.warnings.models import Alert, AlertEvent, AlertStatus, IntegrityIndex
from sanzi.warnings.services import OPEN, find_rule, is_overdue, month_start, next_month, parse_month

REVIEWERS = roles(Role.ADMIN, Role.SUPERVISOR)
#: months of integrity index the report's trend chart covers (ending with the report's month)
TREND_MONTHS = 12
SEVERITIES = ("red", "orange", "yellow")


def _local_today() -> date:
    return datetime.now(get_settings().zone).date()


def _month_bounds(month: date) -> tuple[datetime, datetime]:
    """The month's first and next month's first instant in Asia/Shanghai, as aware UTC times."""
    zone = get_settings().zone
    start = datetime.combine(month, time(0), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(next_month(month), time(0), tzinfo=zone).astimezone(UTC)
    return start, end


# ---- the case file ----------------------------------------------------------------------------------------


async def _evidence_rows(session: AsyncSession, evidence: dict[str, Any]) -> list[dict[str, str]]:
    """Each row an alert points at, described in words a reader of the printed file can follow."""

    def ids(kind: str) -> list[int]:
        return [int(item) for item in evidence.get(kind, []) if isinstance(item, int) or str(item).isdigit()]

    rows: list[dict[str, str]] = []
    for listing in await session.scalars(
        select(Listing).where(Listing.id.in_(ids("listings"))).order_by(Listing.id)
    ):
        price = f"成交价 {listing.final_price_fen / 100:,.2f} 元" if listing.final_price_fen else "未成交"
        rows.append({"kind": "交易项目", "ref": listing.number, "text": f"{listing.title}（{price}）"})
    for contract in await session.scalars(
        select(Contract).where(Contract.id.in_(ids("contracts"))).order_by(Contract.id)
    ):
        rows.append(
            {
                "kind": "合同",
                "ref": contract.number,
                "text": f"{contract.counterparty_name}，{contract.start_date} 起 {contract.term_months} 个月，"
                f"总价 {contract.total_value_fen / 100:,.2f} 元",
            }
        )
    for entry in await session.scalars(
        select(JournalEntry).where(JournalEntry.id.in_(ids("entries"))).order_by(JournalEntry.id)
    ):
        rows.append(
            {
                "kind": "记账凭证",
                "ref": f"第 {entry.seq} 笔",
                "text": f"{entry.entry_date} {entry.memo}（{entry.total_fen / 100:,.2f} 元）",
            }
        )
    for asset in await session.scalars(select(Asset).where(Asset.id.in_(ids("assets"))).order_by(Asset.id)):
        rows.append(
            {"kind": "资产", "ref": asset.code, "text": f"{asset.name}（{label(asset.kind, 'asset_kind')}）"}
        )
    for bidder in await session.scalars(
        select(Bidder).where(Bidder.id.in_(ids("bidders"))).order_by(Bidder.id)
    ):
        rows.append({"kind": "竞买人", "ref": str(bidder.id), "text": bidder.name})
    registrations = await session.execute(
        select(Registration.id, Registration.bidder_number, Bidder.name, Listing.number)
        .join(Bidder, Bidder.id == Registration.bidder_id)
        .join(Listing, Listing.id == Registration.listing_id)
        .where(Registration.id.in_(ids("registrations")))
        .order_by(Registration.id)
    )
    for _, number, name, listing_number in registrations:
        rows.append(
            {"kind": "报名", "ref": f"竞买号 {number or '—'}", "text": f"{name}（项目 {listing_number}）"}
        )
    described = {"listings", "contracts", "entries", "assets", "bidders", "registrations"}
    for kind, items in sorted(evidence.items()):
        if kind in described or not isinstance(items, list):
            continue
        rows.append({"kind": kind, "ref": "、".join(str(item) for item in items[:20]), "text": ""})
    return rows


async def case_file_pdf(session: AsyncSession, alert_id: int, user: User) -> bytes:
    """The printable file of one alert: what was found, the evidence, the review so far, and room to sign."""
    alert = await session.get(Alert, alert_id)
    if alert is None or not user.may_read_village(alert.village_code):
        raise NotFound("预警", "alert")
    rule = None
    try:
        rule = find_rule(alert.rule_id)
    except NotFound:
        pass  # a rule retired since: the file still prints what was found
    village = await session.scalar(select(Village).where(Village.code == alert.village_code))
    assert village is not None
    people = {
        row.id: row.display_name
        for row in await session.execute(
            select(User.id, User.display_name).where(
                User.id.in_(select(AlertEvent.actor_id).where(AlertEvent.alert_id == alert.id))
                | (User.id == alert.assigned_to_id)
            )
        )
    }
    history = list(
        await session.scalars(
            select(AlertEvent).where(AlertEvent.alert_id == alert.id).order_by(AlertEvent.at, AlertEvent.id)
        )
    )
    return await render_pdf(
        "case_file.html",
        alert=alert,
        rule_title=rule.title if rule else alert.rule_id,
        rule_basis=inspect.getdoc(type(rule)) if rule else "",
        ocds_code=rule.ocds_code if rule else None,
        village=village,
        collective_name=await session.scalar(
            select(Collective.name).where(Collective.village_code == village.code)
        ),
        evidence=await _evidence_rows(session, alert.evidence or {}),
        history=history,
        people=people,
        overdue=is_overdue(alert, _local_today()),
        watermark=None,
        generated_at=datetime.now(UTC),
    )


# ---- the monthly township report --------------------------------------------------------------------------


def _chart_style() -> Style:
    return Style(
        font_family=", ".join(f'"{family}"' for family in CJK_FONT_FAMILIES) + ", sans-serif",
        background="white",
        plot_background="white",
        foreground="#222",
        foreground_strong="#111",
        foreground_subtle="#bbb",
        colors=("#b32d2e", "#e07b00", "#c9a400", "#2f7d3b", "#555"),
        title_font_size=15,
        label_font_size=11,
        major_label_font_size=11,
        legend_font_size=12,
        value_font_size=11,
    )


def _svg(chart: Any) -> Markup:
    return Markup(chart.render(is_unicode=True))


def trend_chart(months: list[str], township: list[float | None], city: list[float | None]) -> Markup:
    chart = pygal.Line(
        style=_chart_style(),
        width=760,
        height=300,
        js=[],
        disable_xml_declaration=True,
        explicit_size=True,
        range=(0, 100),
        legend_at_bottom=True,
        truncate_label=-1,
        show_minor_x_labels=True,
        dots_size=3,
        title="廉情指数走势（100 为无预警）",
    )
    chart.x_labels = months
    chart.add("本镇街平均", township)
    chart.add("全市平均", city)
    return _svg(chart)


def alerts_chart(rules: list[tuple[str, dict[str, int]]]) -> Markup:
    longest = max(len(title) for title, _ in rules)
    most = max(sum(counts.values()) for _, counts in rules)
    chart = pygal.HorizontalStackedBar(
        style=_chart_style(),
        width=760,
        height=max(180, 70 + 30 * len(rules)),
        js=[],
        disable_xml_declaration=True,
        explicit_size=True,
        legend_at_bottom=True,
        legend_at_bottom_columns=3,
        truncate_label=-1,
        title="本月新增预警（按规则、等级）",
        print_values=False,
        # pygal sizes label room for Latin letters; a Chinese character is about twice as wide
        margin_left=int(longest * 11 * 0.5),
        y_labels=list(range(0, most + 1, max(1, most // 10))),
    )
    chart.x_labels = [title for title, _ in rules]
    for severity in SEVERITIES:
        chart.add(label(severity, "severity"), [counts.get(severity, 0) for _, counts in rules])
    return _svg(chart)


def _premium(pairs: list[tuple[int, int]]) -> str | None:
    """The mean premium over the starting price, in percent, of (starting, final) pairs."""
    if not pairs:
        return None
    total = sum((Decimal(final - start) * 100 / Decimal(start) for start, final in pairs), Decimal(0))
    return format((total / len(pairs)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP), "f")


async def _status_at(session: AsyncSession, alerts: list[Alert], moment: datetime) -> dict[int, str]:
    """Each alert's status as it stood at ``moment``, replayed from its history."""
    status = {alert.id: AlertStatus.NEW.value for alert in alerts}
    if not alerts:
        return status
    events = await session.execute(
        select(AlertEvent.alert_id, AlertEvent.to_status)
        .where(
            AlertEvent.alert_id.in_([alert.id for alert in alerts]),
            AlertEvent.at < moment,
            AlertEvent.to_status.is_not(None),
        )
        .order_by(AlertEvent.at, AlertEvent.id)
    )
    for alert_id, to_status in events:
        status[alert_id] = to_status
    return status


async def township_report_data(session: AsyncSession, township: Township, month: date) -> dict[str, Any]:
    """Figures, tables and charts of one township's month (times in Asia/Shanghai)."""
    start, end = _month_bounds(month)
    prefix = township.code[:9]
    villages = list(
        await session.scalars(
            select(Village).where(Village.township_code == township.code).order_by(Village.code)
        )
    )
    names = {village.code: village.name for village in villages}

    # trades closed in the month
    closed = list(
        await session.scalars(
            select(Listing)
            .where(
                Listing.village_code.startswith(prefix), Listing.closed_at >= start, Listing.closed_at < end
            )
            .order_by(Listing.closed_at)
        )
    )
    sold = [listing for listing in closed if listing.status == ListingStatus.SOLD.value]
    announced = await session.scalar(
        select(func.count())
        .select_from(Listing)
        .where(
            Listing.village_code.startswith(prefix), Listing.announced_at >= start, Listing.announced_at < end
        )
    )
    trades_by_village: dict[str, list[Listing]] = defaultdict(list)
    for listing in sold:
        trades_by_village[listing.village_code].append(listing)

    # alerts: raised in the month, and where every alert raised by the month's end stood at that moment
    alerts = list(
        await session.scalars(
            select(Alert).where(Alert.township_code == township.code, Alert.first_raised_at < end)
        )
    )
    raised = [alert for alert in alerts if _aware(alert.first_raised_at) >= start]
    at_end = await _status_at(session, alerts, end)
    open_at_end = [alert for alert in alerts if at_end[alert.id] in OPEN]
    by_rule: dict[str, Counter[str]] = defaultdict(Counter)
    for alert in raised:
        by_rule[alert.rule_id][alert.severity] += 1
    titles = {}
    for rule_id in by_rule:
        try:
            titles[rule_id] = find_rule(rule_id).title
        except NotFound:
            titles[rule_id] = rule_id
    rule_rows = sorted(
        ((titles[rule_id], dict(counts), rule_id) for rule_id, counts in by_rule.items()),
        key=lambda row: (-row[1].get("red", 0), -sum(row[1].values()), row[2]),
    )
    reviews = Counter(
        action
        for (action,) in await session.execute(
            select(AlertEvent.action)
            .join(Alert, Alert.id == AlertEvent.alert_id)
            .where(Alert.township_code == township.code, AlertEvent.at >= start, AlertEvent.at < end)
        )
    )
    month_end_day = next_month(month)
    overdue = sorted(
        (
            alert
            for alert in alerts
            if alert.due_on is not None
            and alert.due_on < month_end_day
            and (
                at_end[alert.id] in OPEN
                or (
                    at_end[alert.id] == AlertStatus.CONFIRMED.value
                    and (alert.rectified_at is None or _aware(alert.rectified_at) >= end)
                )
            )
        ),
        key=lambda alert: (alert.due_on, alert.id),
    )

    # the integrity index: the month's villages, and the trend of the township against the city
    index_rows = {
        row.village_code: row
        for row in await session.scalars(
            select(IntegrityIndex).where(
                IntegrityIndex.township_code == township.code, IntegrityIndex.month == month
            )
        )
    }
    serial = month.year * 12 + month.month - 1
    months = [date(n // 12, n % 12 + 1, 1) for n in range(serial - TREND_MONTHS + 1, serial + 1)]
    first = months[0]
    township_means = dict(
        (
            await session.execute(
                select(IntegrityIndex.month, func.avg(IntegrityIndex.score))
                .where(
                    IntegrityIndex.township_code == township.code,
                    IntegrityIndex.month >= first,
                    IntegrityIndex.month <= month,
                )
                .group_by(IntegrityIndex.month)
            )
        ).all()
    )
    city_means = dict(
        (
            await session.execute(
                select(IntegrityIndex.month, func.avg(IntegrityIndex.score))
                .where(IntegrityIndex.month >= first, IntegrityIndex.month <= month)
                .group_by(IntegrityIndex.month)
            )
        ).all()
    )

    def mean(values: dict[Any, Any], key: date) -> float | None:
        value = values.get(key)
        return round(float(value), 2) if value is not None else None

    village_rows = []
    for village in villages:
        index = index_rows.get(village.code)
        trades = trades_by_village.get(village.code, [])
        village_rows.append(
            {
                "code": village.code,
                "name": village.name,
                "score": index.score if index else None,
                "level": index.level if index else None,
                "open": {
                    s: sum(1 for a in open_at_end if a.village_code == village.code and a.severity == s)
                    for s in SEVERITIES
                },
                "trades": len(trades),
                "value_fen": sum(listing.final_price_fen or 0 for listing in trades),
            }
        )
    village_rows.sort(key=lambda row: (row["score"] if row["score"] is not None else 101, row["code"]))
    scores = [row["score"] for row in village_rows if row["score"] is not None]
    levels = Counter(row["level"] for row in village_rows if row["level"])
    return {
        "township": township,
        "month": month,
        "month_label": f"{month.year}年{month.month}月",
        "village_count": len(villages),
        "figures": {
            "announced": announced or 0,
            "closed": len(closed),
            "sold": len(sold),
            "failed": len(closed) - len(sold),
            "value_fen": sum(listing.final_price_fen or 0 for listing in sold),
            "premium": _premium(
                [(listing.starting_price_fen, listing.final_price_fen or 0) for listing in sold]
            ),
            "raised": len(raised),
            "raised_by_severity": Counter(alert.severity for alert in raised),
            "open_at_end": len(open_at_end),
            "overdue": len(overdue),
            "mean_score": round(sum(scores) / len(scores), 2) if scores else None,
        },
        "levels": levels,
        "reviews": reviews,
        "villages": village_rows,
        "village_names": names,
        "rule_rows": rule_rows,
        "overdue": overdue[:40],
        "overdue_total": len(overdue),
        "trades": sold[:40],
        "trend_chart": trend_chart(
            [f"{m.year % 100:02d}-{m.month:02d}" for m in months],
            [mean(township_means, m) for m in months],
            [mean(city_means, m) for m in months],
        ),
        "alerts_chart": alerts_chart([(title, counts) for title, counts, _ in rule_rows])
        if rule_rows
        else None,
    }


def _aware(moment: datetime) -> datetime:
    """Stored times come back naive from SQLite; they are UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def township_report_pdf(
    session: AsyncSession, township_code: str, month_text: str, user: User
) -> bytes:
    code = normalise_code(township_code, "township_code")
    township = await session.get(Township, code)
    if township is None:
        raise NotFound("镇街", "township")
    if not user.may_read_village(township.code):
        raise Forbidden("该镇街不在您的监管范围内", "this township is outside your area")
    month = parse_month(month_text.removesuffix(".pdf"))
    if month > month_start(_local_today()):
        raise NotFound("该月份的监管月报", "a report for a future month")
    data = await township_report_data(session, township, month)
    return await render_pdf("township_report.html", watermark=None, generated_at=datetime.now(UTC), **data)


# ---- HTTP -------------------------------------------------------------------------------------------------


class SupervisionDocumentController(Controller):
    """Printable files for the township's supervisors: an alert's case file and the monthly report."""

    include_in_schema = False
    tags = ["documents"]

    @get("/alerts/{alert_id:int}/case-file.pdf", operation_id="AlertCaseFilePdf", opt=REVIEWERS)
    async def case_file(
        self, db_session: AsyncSession, request: Request[Any, Any, Any], alert_id: int
    ) -> Response[bytes]:
        content = await case_file_pdf(db_session, alert_id, request.user)
        return pdf_response(content, f"预警处置单-{alert_id}.pdf", private=True)

    @get(
        "/reports/townships/{township_code:str}/{month:str}",
        operation_id="TownshipMonthlyReportPdf",
        opt=REVIEWERS,
    )
    async def township_report(
        self, db_session: AsyncSession, request: Request[Any, Any, Any], township_code: str, month: str
    ) -> Response[bytes]:
        content = await township_report_pdf(db_session, township_code, month, request.user)
        name = month.removesuffix(".pdf")
        return pdf_response(content, f"监管月报-{township_code}-{name}.pdf", private=True)


controllers: list[Any] = [SupervisionDocumentController]
