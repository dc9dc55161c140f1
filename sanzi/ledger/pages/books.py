"""The committee's books: journal entries (list, one entry with its place in the hash chain), posting a
balanced entry (a client key per form so a double submit posts once), reversing an entry, the trial balance,
the statements (balance sheet, income and expenditure by period) and an account's statement — through the
books service."""

from __future__ import annotations

import uuid
from datetime import date
from functools import lru_cache
from typing import Any

from litestar import Controller, get, post
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.ledger.pages.chooser import choose_village
from sanzi.ledger.pages.common import (
    PERIOD_KINDS,
    READ,
    WRITE,
    AnyRequest,
    field_errors,
    is_form_error,
    known_id,
    money,
    page_number,
    page_village,
    parse_date,
    period_choice,
    periods,
    saved,
    today_beijing,
    village_context,
)
from sanzi.ledger.schemas.books import EntryCreate, ReversalCreate
from sanzi.ledger.services.books import BooksService
from sanzi.platform.access import check_village, collective_for, village_for
from sanzi.platform.charts import bar_chart
from sanzi.platform.models import Collective
from sanzi.platform.pages import flash, form_data, page, paginate, request_language, translate
from sanzi.platform.problems import DomainError

PER_PAGE = 20
DEFAULT_LINES = 2
MAX_FORM_LINES = 30
LINE_FIELDS = ("account_code", "debit", "credit", "memo")


def _no_village() -> DomainError:
    return DomainError("请先选择村", "choose a village first", field="village", status_code=400)


def _line_count(form: dict[str, str]) -> int:
    """How many line rows the submitted form had (at least the default)."""
    try:
        count = int(form.get("line_count", DEFAULT_LINES))
    except ValueError:
        count = DEFAULT_LINES
    return min(max(count, 2), MAX_FORM_LINES)


def _entry_input(form: dict[str, str], count: int) -> dict[str, Any]:
    """The entry as the schema wants it: blank rows dropped, amounts as typed (commas and ¥ allowed)."""
    lines = []
    for index in range(count):
        row = {name: form.get(f"lines.{index}.{name}", "") for name in LINE_FIELDS}
        if not any(row.values()):
            continue
        line: dict[str, Any] = {"account_code": row["account_code"]}
        line["debit"] = money(row["debit"]) or "0"
        line["credit"] = money(row["credit"]) or "0"
        if row["memo"]:
            line["memo"] = row["memo"]
        lines.append(line)
    values: dict[str, Any] = {
        "entry_date": form.get("entry_date", ""),
        "memo": form.get("memo", ""),
        "lines": lines,
        "client_key": form.get("client_key") or None,
    }
    if form.get("counterparty"):
        values["counterparty"] = form["counterparty"]
    return values


def _renumber_errors(errors: dict[str, str], form: dict[str, str], count: int) -> dict[str, str]:
    """Errors name lines by their place among the non-blank rows; point them at the rows the person filled."""
    filled = [i for i in range(count) if any(form.get(f"lines.{i}.{n}", "") for n in LINE_FIELDS)]
    out: dict[str, str] = {}
    for key, message in errors.items():
        parts = key.split(".")
        if len(parts) >= 2 and parts[0] == "lines" and parts[1].isdigit() and int(parts[1]) < len(filled):
            parts[1] = str(filled[int(parts[1])])
            key = ".".join(parts)
            if len(parts) == 2:  # a whole-line message (one side only): show it beside the credit
                key += ".credit"
        out[key] = message
    return out


class BooksPages(Controller):
    """账簿：凭证录入与查询、冲销、试算平衡表、财务报表。"""

    path = "/committee/books"
    include_in_schema = False

    async def _collective(
        self, db_session: AsyncSession, request: AnyRequest
    ) -> tuple[Any, Collective] | None:
        village = await page_village(db_session, request)
        if village is None:
            return None
        return village, await collective_for(db_session, village.code, request.user)

    @get("/", opt=READ)
    async def journal(self, db_session: AsyncSession, request: AnyRequest) -> Template:
        found = await self._collective(db_session, request)
        if found is None:
            return await choose_village(db_session, request, "/committee/books", "账簿")
        village, collective = found
        query = request.query_params
        date_from, date_to = parse_date(query.get("date_from")), parse_date(query.get("date_to"))
        service = BooksService(db_session)
        accounts = await service.accounts(collective)
        account_code = query.get("account") if query.get("account") in {a.code for a in accounts} else None
        number = page_number(request)
        rows, total = await service.entries(
            collective,
            date_from=date_from,
            date_to=date_to,
            account_code=account_code,
            page=number,
            page_size=PER_PAGE,
        )
        entries = await service.entries_out(rows, village.code)
        return page(
            request,
            "committee/books.html",
            **village_context(request, village),
            section="books",
            collective=collective,
            entries=entries,
            pager=paginate(total, number, PER_PAGE),
            filters={
                "date_from": query.get("date_from", ""),
                "date_to": query.get("date_to", ""),
                "account": account_code or "",
            },
            accounts=[(a.code, f"{a.code} {a.name}") for a in accounts],
        )

    # ---- posting -------------------------------------------------------------------------------------------

    async def _entry_form(
        self,
        db_session: AsyncSession,
        request: AnyRequest,
        form: dict[str, str],
        errors: dict[str, str],
        status_code: int = 200,
    ) -> Template:
        village = await page_village(db_session, request, write=True)
        if village is None:
            raise _no_village()
        collective = await collective_for(db_session, village.code, request.user, write=True)
        accounts = [a for a in await BooksService(db_session).accounts(collective) if a.is_active]
        return page(
            request,
            "committee/entry_form.html",
            status_code=status_code,
            **village_context(request, village),
            section="books",
            form=form,
            errors=errors,
            line_count=_line_count(form),
            accounts=[(a.code, f"{a.code} {a.name}") for a in accounts],
        )

    @get("/new", opt=WRITE)
    async def new_entry(self, db_session: AsyncSession, request: AnyRequest) -> Template:
        form = {
            "entry_date": today_beijing().isoformat(),
            "client_key": uuid.uuid4().hex,
            "line_count": str(DEFAULT_LINES),
        }
        return await self._entry_form(db_session, request, form, {})

    @post("/new", opt=WRITE)
    async def post_entry(self, db_session: AsyncSession, request: AnyRequest) -> Template | Redirect:
        form = await form_data(request)
        village = await page_village(db_session, request, write=True)
        if village is None:
            raise _no_village()
        count = _line_count(form)
        if "add_line" in form:  # one more row, nothing posted
            form["line_count"] = str(min(count + 1, MAX_FORM_LINES))
            return await self._entry_form(db_session, request, form, {})
        collective = await collective_for(db_session, village.code, request.user, write=True)
        try:
            data = EntryCreate.model_validate(_entry_input(form, count))
            await (
                db_session.commit()
            )  # as the API: the posting starts a fresh transaction and waits for the lock
            service = BooksService(db_session)
            entry, created = await service.post_entry(collective, data, request.user)
        except Exception as exc:
            if not is_form_error(exc):
                raise
            await db_session.rollback()
            errors = _renumber_errors(field_errors(exc), form, count)
            return await self._entry_form(db_session, request, form, errors, 400)
        if created:
            flash(request, f"凭证已入账：第 {entry.seq} 号")
        else:
            flash(request, f"该凭证已入账（第 {entry.seq} 号），重复提交未再入账", "info")
        return await saved(db_session, f"/committee/books/entries/{entry.id}?village={village.code}")

    # ---- one entry -----------------------------------------------------------------------------------------

    async def _entry_page(
        self,
        db_session: AsyncSession,
        request: AnyRequest,
        entry_id: int,
        form: dict[str, str] | None = None,
        errors: dict[str, str] | None = None,
        status_code: int = 200,
    ) -> Template:
        known_id(entry_id)
        service = BooksService(db_session)
        entry = await service.get_entry(entry_id)
        collective = await service.collective_of(entry)
        check_village(request.user, collective.village_code)
        village = await village_for(db_session, collective.village_code, request.user)
        (out,) = await service.entries_out([entry], village.code)
        reverses = None
        if out.reverses_entry_id:
            reverses = (
                await service.entries_out([await service.get_entry(out.reverses_entry_id)], village.code)
            )[0]
        reversed_by = None
        if out.reversed_by_entry_id:
            reversed_by = (
                await service.entries_out([await service.get_entry(out.reversed_by_entry_id)], village.code)
            )[0]
        return page(
            request,
            "committee/entry.html",
            status_code=status_code,
            **village_context(request, village),
            section="books",
            entry=out,
            reverses=reverses,
            reversed_by=reversed_by,
            collective=collective,
            form=form or {"entry_date": today_beijing().isoformat()},
            errors=errors or {},
        )

    @get("/entries/{entry_id:int}", opt=READ)
    async def entry(self, db_session: AsyncSession, request: AnyRequest, entry_id: int) -> Template:
        known_id(entry_id)
        return await self._entry_page(db_session, request, entry_id)

    @post("/entries/{entry_id:int}/reverse", opt=WRITE)
    async def reverse(
        self, db_session: AsyncSession, request: AnyRequest, entry_id: int
    ) -> Template | Redirect:
        known_id(entry_id)
        form = await form_data(request)
        service = BooksService(db_session)
        entry = await service.get_entry(entry_id)
        collective = await service.collective_of(entry)
        check_village(request.user, collective.village_code, write=True)
        try:
            data = ReversalCreate.model_validate(
                {k: v for k, v in form.items() if k in ("entry_date", "memo") and v}
            )
            await db_session.commit()
            reversal = await service.reverse_entry(collective, entry, request.user, data)
        except Exception as exc:
            if not is_form_error(exc):
                raise
            await db_session.rollback()
            return await self._entry_page(db_session, request, entry_id, form, field_errors(exc), 400)
        flash(request, f"已冲销：冲销凭证为第 {reversal.seq} 号")
        return await saved(
            db_session, f"/committee/books/entries/{reversal.id}?village={collective.village_code}"
        )

    # ---- reports -------------------------------------------------------------------------------------------

    @get("/trial-balance", opt=READ)
    async def trial_balance(self, db_session: AsyncSession, request: AnyRequest) -> Template:
        found = await self._collective(db_session, request)
        if found is None:
            return await choose_village(db_session, request, "/committee/books/trial-balance", "试算平衡表")
        village, collective = found
        as_of = parse_date(request.query_params.get("as_of"))
        balance = await BooksService(db_session).trial_balance(collective, as_of)
        return page(
            request,
            "committee/trial_balance.html",
            **village_context(request, village),
            section="books",
            balance=balance,
            rows=[row for row in balance.accounts if row.debit or row.credit],
            as_of=as_of.isoformat() if as_of else "",
        )

    @get("/statements", opt=READ)
    async def statements(self, db_session: AsyncSession, request: AnyRequest) -> Template:
        found = await self._collective(db_session, request)
        if found is None:
            return await choose_village(db_session, request, "/committee/books/statements", "财务报表")
        village, collective = found
        service = BooksService(db_session)
        by, year = period_choice(request, today_beijing().year)
        lang = request_language(request)
        table = await income_expenditure_by_period(service, collective, by, year, lang)
        as_of = parse_date(request.query_params.get("as_of")) or min(date(year, 12, 31), today_beijing())
        sheet = balance_sheet(await service.trial_balance(collective, as_of))
        year_total = await service.income_expenditure(collective, date(year, 1, 1), date(year, 12, 31))
        return page(
            request,
            "committee/statements.html",
            **village_context(request, village),
            section="books",
            by=by,
            year=year,
            kinds=list(PERIOD_KINDS.items()),
            table=table,
            chart=income_chart(table, lang),
            sheet=sheet,
            as_of=as_of,
            year_total=year_total,
        )

    @get("/accounts/{account_code:str}", opt=READ)
    async def account(self, db_session: AsyncSession, request: AnyRequest, account_code: str) -> Template:
        found = await self._collective(db_session, request)
        if found is None:
            return await choose_village(db_session, request, "/committee/books", "账簿")
        village, collective = found
        query = request.query_params
        date_from, date_to = parse_date(query.get("date_from")), parse_date(query.get("date_to"))
        statement = await BooksService(db_session).statement(collective, account_code, date_from, date_to)
        return page(
            request,
            "committee/account.html",
            **village_context(request, village),
            section="books",
            statement=statement,
            filters={"date_from": query.get("date_from", ""), "date_to": query.get("date_to", "")},
        )


# ---- report helpers shared with the public disclosure ----------------------------------------------------


async def income_expenditure_by_period(
    service: BooksService, collective: Collective, by: str, year: int, lang: str = "zh"
) -> list[dict[str, Any]]:
    """Total income, expenditure and the balance of each period, from the books service."""
    chosen = periods(by, year, lang)
    totals = await service.income_expenditure_by_period(collective, [(first, last) for _, first, last in chosen])
    return [
        {
            "label": label,
            "date_from": first,
            "date_to": last,
            "income": income,
            "expenditure": spent,
            "net": income - spent,
        }
        for (label, first, last), (income, spent) in zip(chosen, totals, strict=True)
    ]


def income_chart(table: list[dict[str, Any]], lang: str = "zh") -> Any:
    """Income against expenditure per period of the table, as SVG."""
    return _income_chart(
        tuple((row["label"], row["income"], row["expenditure"]) for row in table),
        lang,
    )


@lru_cache(maxsize=512)
def _income_chart(rows: tuple[tuple[str, int, int], ...], lang: str) -> Any:
    # drawing is the page's costliest step after its queries, and a village's past periods do not change: the
    # same figures are drawn once per process
    return bar_chart(
        [label for label, _, _ in rows],
        {
            translate("收入（元）", lang): [income / 100 for _, income, _ in rows],
            translate("支出（元）", lang): [spent / 100 for _, _, spent in rows],
        },
        title=translate("收入与支出", lang),
        formatter=lambda value: f"{value:,.0f}",
        width=560,
        height=340,
    )


def balance_sheet(trial: Any) -> dict[str, Any]:
    """The balance sheet from the trial balance: what the collective has (assets) against what it owes and
    owns (liabilities, equity) plus this period's income less expenses not yet carried into equity."""
    sides: dict[str, list[tuple[str, str, int]]] = {"asset": [], "liability": [], "equity": []}
    surplus = 0
    for row in trial.accounts:
        net_debit = row.debit - row.credit
        if not net_debit:
            continue
        if row.type in ("asset", "cost"):
            sides["asset"].append((row.code, row.name, net_debit))
        elif row.type in ("liability", "equity"):
            sides[row.type].append((row.code, row.name, -net_debit))
        else:
            surplus -= net_debit
    total_assets = sum(amount for _, _, amount in sides["asset"])
    total_liabilities = sum(amount for _, _, amount in sides["liability"])
    total_equity = sum(amount for _, _, amount in sides["equity"]) + surplus
    return {
        **sides,
        "surplus": surplus,
        "total_assets": total_assets,
        "total_liabilities": total_liabilities,
        "total_equity": total_equity,
        "balanced": total_assets == total_liabilities + total_equity,
    }


controllers: list[Any] = [BooksPages]
