"""The standard chart of accounts of a village collective economic organisation.

After the national accounting system for village collective economic organisations (《农村集体经济组织会计制度》,
财会〔2023〕14号), with the detail accounts this platform's rules watch: deposits held (保证金), contracting and
lease income (发包及出租收入), hospitality (招待费) and payouts to members (向成员分配).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.ledger.models import Account

# code, name, type, normal side, category, parent code
STANDARD_CHART: list[tuple[str, str, str, str, str | None, str | None]] = [
    ("101", "库存现金", "asset", "debit", "cash", None),
    ("102", "银行存款", "asset", "debit", "bank", None),
    ("111", "短期投资", "asset", "debit", None, None),
    ("112", "应收款", "asset", "debit", "receivable", None),
    ("11201", "应收款—承包及租赁费", "asset", "debit", "contract_receivable", "112"),
    ("113", "内部往来", "asset", "debit", None, None),
    ("121", "库存物资", "asset", "debit", None, None),
    ("131", "消耗性生物资产", "asset", "debit", None, None),
    ("132", "生产性生物资产", "asset", "debit", None, None),
    ("133", "生产性生物资产累计折旧", "asset", "credit", None, None),
    ("134", "公益性生物资产", "asset", "debit", None, None),
    ("141", "长期投资", "asset", "debit", None, None),
    ("151", "固定资产", "asset", "debit", "fixed_asset", None),
    ("152", "累计折旧", "asset", "credit", None, None),
    ("153", "在建工程", "asset", "debit", None, None),
    ("154", "固定资产清理", "asset", "debit", None, None),
    ("161", "无形资产", "asset", "debit", None, None),
    ("162", "累计摊销", "asset", "credit", None, None),
    ("171", "待处理财产损溢", "asset", "debit", None, None),
    ("201", "短期借款", "liability", "credit", None, None),
    ("211", "应付款", "liability", "credit", "payable", None),
    ("21101", "应付款—竞买保证金", "liability", "credit", "deposit_held", "211"),
    ("21102", "应付款—履约保证金", "liability", "credit", "performance_bond_held", "211"),
    ("212", "应付工资", "liability", "credit", None, None),
    ("213", "应付劳务费", "liability", "credit", None, None),
    ("214", "应交税费", "liability", "credit", None, None),
    ("221", "长期借款及应付款", "liability", "credit", None, None),
    ("231", "一事一议资金", "liability", "credit", None, None),
    ("241", "专项应付款", "liability", "credit", None, None),
    ("301", "资本", "equity", "credit", None, None),
    ("311", "公积公益金", "equity", "credit", None, None),
    ("321", "本年收益", "equity", "credit", None, None),
    ("322", "收益分配", "equity", "debit", None, None),
    ("32201", "收益分配—向成员分配", "equity", "debit", "villager_payout", "322"),
    ("401", "生产（劳务）成本", "cost", "debit", None, None),
    ("501", "经营收入", "income", "credit", "operating_income", None),
    ("50101", "经营收入—发包及出租收入", "income", "credit", "contract_income", "501"),
    ("502", "经营支出", "expense", "debit", "operating_expense", None),
    ("503", "税金及附加", "expense", "debit", None, None),
    ("511", "投资收益", "income", "credit", None, None),
    ("521", "补助收入", "income", "credit", None, None),
    ("522", "其他收入", "income", "credit", None, None),
    ("531", "管理费用", "expense", "debit", "management_expense", None),
    ("53101", "管理费用—招待费", "expense", "debit", "hospitality", "531"),
    ("53102", "管理费用—办公费", "expense", "debit", None, "531"),
    ("53103", "管理费用—干部报酬", "expense", "debit", None, "531"),
    ("532", "公益支出", "expense", "debit", None, None),
    ("533", "其他支出", "expense", "debit", "non_production", None),
    ("53301", "其他支出—向个人支付", "expense", "debit", "individual_payout", "533"),
    ("541", "所得税费用", "expense", "debit", None, None),
]


async def open_books(session: AsyncSession, collective_ids: Iterable[int]) -> int:
    """Give each collective that has none the standard chart, in one set-based insert; returns rows added."""
    ids = list(collective_ids)
    if not ids:
        return 0
    have = set(await session.scalars(select(Account.collective_id).where(Account.collective_id.in_(ids)).distinct()))
    rows = [
        {
            "collective_id": collective_id,
            "code": code,
            "name": name,
            "type": type_,
            "normal_side": side,
            "category": category,
            "parent_code": parent,
            "is_active": True,
        }
        for collective_id in ids
        if collective_id not in have
        for code, name, type_, side, category, parent in STANDARD_CHART
    ]
    if rows:
        await session.execute(insert(Account.__table__), rows)
    return len(rows)
