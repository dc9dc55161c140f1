"""Village governance data the election and related-party rules need: cadres (village committee and Party
branch members, with their terms) and their declared relatives, the election calendar and the candidates.

Who may do what: the village's committee and admins keep the cadre register; supervisors of the area read it.
Election dates and candidates are set by admins and the area's supervisors (the township organises the 换届);
election dates are public, candidates are for officials. A cadre with history is never deleted: DELETE ends
the term (term_end = today) so the related-party rules keep seeing who was in office; only a cadre whose term
has not started yet (an entry made in advance, or by mistake) is removed outright.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, Literal

from litestar import Controller, Request, delete, get, patch, post
from litestar.status_codes import HTTP_204_NO_CONTENT
from pydantic import Field, field_validator, model_validator
from sqlalchemy import Date, String, and_, exists, func, insert, literal, select
from sqlalchemy.ext.asyncio import AsyncSession
from stdnum.cn import ric

from sanzi.platform import events, identity
from sanzi.platform.access import check_village, village_for
from sanzi.platform.auth import PUBLIC, roles
from sanzi.platform.geography import normalise_code
from sanzi.platform.models import Cadre, CadreRelative, Candidate, Election, Role, User, Village
from sanzi.platform.problems import Conflict, DomainError, NotFound
from sanzi.platform.schemas import Schema, StrictSchema
from sanzi.platform.settings import local_today

#: Guangdong's rounds of village re-elections (the next falls in 2026)
GUANGDONG_ROUNDS = (2014, 2017, 2021, 2026)
FAR_FUTURE = date(9999, 12, 31)


def person_id_number(value: str, field: str = "id_number") -> str:
    """A valid resident ID number of a person of any age (a relative may be a child), normalised."""
    number = identity.resident_id(value, field, today=FAR_FUTURE)  # the same stdnum checks, no adult check
    if ric.get_birth_date(number) > date.today():
        raise DomainError("居民身份证号码中的出生日期在未来", "the birth date of the resident ID is in the future",
                          field=field)
    return number


# ---- schemas ----------------------------------------------------------------------------------------------


class CadreCreate(StrictSchema):
    name: str = Field(min_length=1, max_length=64)
    id_number: str | None = Field(default=None, max_length=24, description="resident ID number")
    phone: str | None = Field(default=None, max_length=20, description="mainland mobile number")
    body: Literal["committee", "party_branch"]
    position: str = Field(min_length=1, max_length=32, description="书记、主任、委员、出纳 …")
    term_start: date
    term_end: date | None = None

    @model_validator(mode="after")
    def _term(self) -> CadreCreate:
        if self.term_end is not None and self.term_end < self.term_start:
            raise ValueError("任期结束日不能早于开始日 / term_end is before term_start")
        return self


class CadreUpdate(StrictSchema):
    """What may change: contact, position and the end of the term (identity and body stay)."""

    phone: str | None = Field(default=None, max_length=20)
    position: str | None = Field(default=None, min_length=1, max_length=32)
    term_end: date | None = None


class RelativeCreate(StrictSchema):
    name: str = Field(min_length=1, max_length=64)
    id_number: str | None = Field(default=None, max_length=24)
    relation: Literal["配偶", "父母", "子女", "兄弟姐妹", "祖父母", "孙子女", "配偶父母", "子女配偶", "其他"]


class Relative(Schema):
    id: int
    cadre_id: int
    name: str
    id_number: str | None = None
    relation: str


class CadreOut(Schema):
    id: int
    village_code: str
    name: str
    id_number: str | None = None
    phone: str | None = None
    body: str
    position: str
    term_start: date
    term_end: date | None = None
    relatives: list[Relative] = []


class ElectionCreate(StrictSchema):
    election_date: date
    note: str | None = Field(default=None, max_length=500)

    @field_validator("election_date")
    @classmethod
    def _plausible(cls, value: date) -> date:
        if not 2000 <= value.year <= 2100:
            raise ValueError("选举日期应在 2000 至 2100 年之间 / election_date must be between 2000 and 2100")
        return value


class ElectionBulk(ElectionCreate):
    """One date for every village of a district (6 or 12 digits), or of the city when no district is given."""

    district_code: str | None = Field(default=None, max_length=12)


class ElectionPublic(Schema):
    id: int
    village_code: str
    election_date: date


class ElectionOut(ElectionPublic):
    note: str | None = None


class BulkResult(Schema):
    election_date: date
    created: int
    skipped: int


class CandidateCreate(StrictSchema):
    name: str = Field(min_length=1, max_length=64)
    id_number: str | None = Field(default=None, max_length=24)
    position: str = Field(min_length=1, max_length=32, description="主任、委员、书记 …")


class CandidateOut(Schema):
    id: int
    election_id: int
    name: str
    id_number: str | None = None
    position: str


# ---- service ----------------------------------------------------------------------------------------------


class GovernanceService:
    """Cadres, relatives, elections and candidates, with every object-level check."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def cadres(self, code: str, user: User) -> list[CadreOut]:
        village = await village_for(self.session, code, user)
        cadres = list(await self.session.scalars(
            select(Cadre).where(Cadre.village_code == village.code).order_by(Cadre.term_start.desc(), Cadre.id)
        ))
        relatives: dict[int, list[Relative]] = {}
        for relative in await self.session.scalars(
            select(CadreRelative).where(CadreRelative.cadre_id.in_([c.id for c in cadres])).order_by(CadreRelative.id)
        ):
            relatives.setdefault(relative.cadre_id, []).append(Relative.model_validate(relative))
        return [self._cadre_out(c, relatives.get(c.id, [])) for c in cadres]

    async def add_cadre(self, code: str, data: CadreCreate, user: User) -> CadreOut:
        village = await village_for(self.session, code, user, write=True)
        cadre = Cadre(
            village_code=village.code,
            name=data.name,
            id_number=identity.resident_id(data.id_number) if data.id_number else None,
            phone=identity.mainland_mobile(data.phone) if data.phone else None,
            body=data.body,
            position=data.position,
            term_start=data.term_start,
            term_end=data.term_end,
        )
        self.session.add(cadre)
        await self.session.flush()
        return self._cadre_out(cadre, [])

    async def update_cadre(self, cadre_id: int, data: CadreUpdate, user: User) -> CadreOut:
        cadre = await self._cadre(cadre_id, user, write=True)
        changes = data.model_dump(exclude_unset=True)
        if "phone" in changes:
            cadre.phone = identity.mainland_mobile(data.phone) if data.phone else None
        if data.position is not None:
            cadre.position = data.position
        if "term_end" in changes:
            if data.term_end is not None and data.term_end < cadre.term_start:
                raise DomainError("任期结束日不能早于开始日", "term_end is before term_start", field="term_end")
            cadre.term_end = data.term_end
        await self.session.flush()
        return self._cadre_out(cadre, await self._relatives(cadre.id))

    async def remove_cadre(self, cadre_id: int, user: User, today: date) -> None:
        """End the term of a cadre who has served (history is kept); delete one whose term has not begun."""
        cadre = await self._cadre(cadre_id, user, write=True)
        if cadre.term_start > today:
            await self.session.delete(cadre)
        elif cadre.term_end is None or cadre.term_end > today:
            cadre.term_end = today
        await self.session.flush()

    async def add_relative(self, cadre_id: int, data: RelativeCreate, user: User) -> Relative:
        cadre = await self._cadre(cadre_id, user, write=True)
        relative = CadreRelative(
            cadre_id=cadre.id,
            name=data.name,
            id_number=person_id_number(data.id_number) if data.id_number else None,
            relation=data.relation,
        )
        self.session.add(relative)
        await self.session.flush()
        return Relative.model_validate(relative)

    async def remove_relative(self, relative_id: int, user: User) -> None:
        relative = await self.session.get(CadreRelative, relative_id)
        if relative is None:
            raise NotFound("亲属", "relative")
        await self._cadre(relative.cadre_id, user, write=True)
        await self.session.delete(relative)
        await self.session.flush()

    async def elections(self, code: str) -> list[Election]:
        village = await village_for(self.session, code, None, public=True)
        return list(await self.session.scalars(
            select(Election).where(Election.village_code == village.code).order_by(Election.election_date)
        ))

    async def add_election(self, code: str, data: ElectionCreate, user: User) -> Election:
        village = await village_for(self.session, code, user)  # supervisors: within their area
        if await self.session.scalar(select(exists().where(
            Election.village_code == village.code, Election.election_date == data.election_date
        ))):
            raise Conflict("该村已登记该日期的选举", "this village already has an election on that date",
                           field="election_date")
        election = Election(village_code=village.code, election_date=data.election_date, note=data.note)
        self.session.add(election)
        await self.session.flush()
        events.record(self.session, "election_set", village.code, election_id=election.id)
        return election

    async def add_elections_everywhere(self, data: ElectionBulk) -> BulkResult:
        """One set-based insert for every village of the district (or city) lacking that date."""
        villages = select(Village.code)
        if data.district_code:
            district = normalise_code(data.district_code, "district_code")
            if not await self.session.scalar(select(exists().where(Village.district_code == district))):
                raise DomainError("没有该区的村", "no villages in that district", field="district_code")
            villages = villages.where(Village.district_code == district)
        total = await self.session.scalar(select(func.count()).select_from(villages.subquery())) or 0
        now = datetime.now(UTC)
        missing = villages.where(~exists().where(
            and_(Election.village_code == Village.code, Election.election_date == data.election_date)
        ))
        inserted = (await self.session.execute(
            insert(Election)
            .from_select(
                ["village_code", "election_date", "note", "created_at", "updated_at"],
                select(missing.subquery().c.code, literal(data.election_date, Date()), literal(data.note, String(500)),
                       literal(now), literal(now)),
            )
            .returning(Election.id, Election.village_code)
        )).all()
        for election_id, village_code in inserted:
            events.record(self.session, "election_set", village_code, election_id=election_id)
        return BulkResult(election_date=data.election_date, created=len(inserted), skipped=total - len(inserted))

    async def candidates(self, election_id: int, user: User) -> list[Candidate]:
        election = await self._election(election_id, user)
        return list(await self.session.scalars(
            select(Candidate).where(Candidate.election_id == election.id).order_by(Candidate.id)
        ))

    async def add_candidate(self, election_id: int, data: CandidateCreate, user: User) -> Candidate:
        election = await self._election(election_id, user)
        candidate = Candidate(
            election_id=election.id,
            name=data.name,
            id_number=identity.resident_id(data.id_number) if data.id_number else None,
            position=data.position,
        )
        self.session.add(candidate)
        await self.session.flush()
        # the related-party rule reads candidates: re-evaluate the village as when the date was set
        events.record(self.session, "election_set", election.village_code, election_id=election.id)
        return candidate

    async def _cadre(self, cadre_id: int, user: User, *, write: bool = False) -> Cadre:
        cadre = await self.session.get(Cadre, cadre_id)
        if cadre is None:
            raise NotFound("村干部", "cadre")
        check_village(user, cadre.village_code, write=write)
        return cadre

    async def _election(self, election_id: int, user: User) -> Election:
        election = await self.session.get(Election, election_id)
        if election is None:
            raise NotFound("选举", "election")
        check_village(user, election.village_code)
        return election

    async def _relatives(self, cadre_id: int) -> list[Relative]:
        rows = await self.session.scalars(
            select(CadreRelative).where(CadreRelative.cadre_id == cadre_id).order_by(CadreRelative.id)
        )
        return [Relative.model_validate(r) for r in rows]

    @staticmethod
    def _cadre_out(cadre: Cadre, relatives: list[Relative]) -> CadreOut:
        return CadreOut.model_validate({**{k: getattr(cadre, k) for k in CadreOut.model_fields if k != "relatives"},
                                        "relatives": relatives})


# ---- controllers ------------------------------------------------------------------------------------------

OFFICIALS = roles(Role.ADMIN, Role.COMMITTEE, Role.SUPERVISOR)
REGISTER_KEEPERS = roles(Role.ADMIN, Role.COMMITTEE)
ORGANISERS = roles(Role.ADMIN, Role.SUPERVISOR)


def _today() -> date:
    return local_today()


class CadreController(Controller):
    """The village's cadres and their declared relatives (for the related-party rules)."""

    path = "/api"
    tags = ["governance"]

    @get("/villages/{code:str}/cadres", operation_id="ListCadres", opt=OFFICIALS)
    async def list_cadres(self, db_session: AsyncSession, request: Request[Any, Any, Any], code: str
                          ) -> list[CadreOut]:
        return await GovernanceService(db_session).cadres(code, request.user)

    @post("/villages/{code:str}/cadres", operation_id="CreateCadre", opt=REGISTER_KEEPERS)
    async def create_cadre(self, db_session: AsyncSession, request: Request[Any, Any, Any], code: str,
                           data: CadreCreate) -> CadreOut:
        return await GovernanceService(db_session).add_cadre(code, data, request.user)

    @patch("/cadres/{cadre_id:int}", operation_id="UpdateCadre", opt=REGISTER_KEEPERS)
    async def update_cadre(self, db_session: AsyncSession, request: Request[Any, Any, Any], cadre_id: int,
                           data: CadreUpdate) -> CadreOut:
        return await GovernanceService(db_session).update_cadre(cadre_id, data, request.user)

    @delete("/cadres/{cadre_id:int}", operation_id="EndCadreTerm", opt=REGISTER_KEEPERS,
            status_code=HTTP_204_NO_CONTENT, summary="End the term (or remove a cadre whose term has not begun)")
    async def delete_cadre(self, db_session: AsyncSession, request: Request[Any, Any, Any], cadre_id: int) -> None:
        await GovernanceService(db_session).remove_cadre(cadre_id, request.user, _today())

    @post("/cadres/{cadre_id:int}/relatives", operation_id="CreateCadreRelative", opt=REGISTER_KEEPERS)
    async def create_relative(self, db_session: AsyncSession, request: Request[Any, Any, Any], cadre_id: int,
                              data: RelativeCreate) -> Relative:
        return await GovernanceService(db_session).add_relative(cadre_id, data, request.user)

    @delete("/relatives/{relative_id:int}", operation_id="DeleteCadreRelative", opt=REGISTER_KEEPERS,
            status_code=HTTP_204_NO_CONTENT)
    async def delete_relative(self, db_session: AsyncSession, request: Request[Any, Any, Any], relative_id: int
                              ) -> None:
        await GovernanceService(db_session).remove_relative(relative_id, request.user)


class ElectionController(Controller):
    """The election calendar (dates are public) and the registered candidates (officials only)."""

    path = "/api"
    tags = ["governance"]

    @get("/villages/{code:str}/elections", operation_id="ListElections", opt=PUBLIC)
    async def list_elections(self, db_session: AsyncSession, code: str) -> list[ElectionPublic]:
        return [ElectionPublic.model_validate(e) for e in await GovernanceService(db_session).elections(code)]

    @post("/villages/{code:str}/elections", operation_id="CreateElection", opt=ORGANISERS)
    async def create_election(self, db_session: AsyncSession, request: Request[Any, Any, Any], code: str,
                              data: ElectionCreate) -> ElectionOut:
        election = await GovernanceService(db_session).add_election(code, data, request.user)
        return ElectionOut.model_validate(election)

    @post("/elections/bulk", operation_id="CreateElectionsBulk", opt=roles(Role.ADMIN),
          summary="One election date for every village of a district or of the city")
    async def create_bulk(self, db_session: AsyncSession, data: ElectionBulk) -> BulkResult:
        return await GovernanceService(db_session).add_elections_everywhere(data)

    @get("/elections/{election_id:int}/candidates", operation_id="ListCandidates", opt=OFFICIALS)
    async def list_candidates(self, db_session: AsyncSession, request: Request[Any, Any, Any], election_id: int
                              ) -> list[CandidateOut]:
        rows = await GovernanceService(db_session).candidates(election_id, request.user)
        return [CandidateOut.model_validate(c) for c in rows]

    @post("/elections/{election_id:int}/candidates", operation_id="CreateCandidate", opt=ORGANISERS)
    async def create_candidate(self, db_session: AsyncSession, request: Request[Any, Any, Any], election_id: int,
                               data: CandidateCreate) -> CandidateOut:
        candidate = await GovernanceService(db_session).add_candidate(election_id, data, request.user)
        return CandidateOut.model_validate(candidate)


controllers: list[Any] = [CadreController, ElectionController]
