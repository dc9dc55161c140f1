"""Identity numbers and contact details of bidders, checked with python-stdnum (no hand-written checksums).

A person is identified by the 18-character resident ID number (GB 11643), a company by the unified social
credit code (GB 32100). Both are returned in their compact, upper-case form so that the same identity is
always stored, compared and searched the same way.
"""

from __future__ import annotations

import re
from datetime import date

from stdnum import numdb
from stdnum.cn import ric, uscc
from stdnum.exceptions import InvalidChecksum, InvalidComponent, InvalidLength, ValidationError

from sanzi.platform.problems import DomainError

#: the age of full civil capacity (完全民事行为能力) a person needs to bid on their own
ADULT_AGE = 18
MOBILE = re.compile(r"^1[3-9][0-9]{9}$")
BANK_ACCOUNT = re.compile(r"^[0-9]{6,32}$")


def resident_id(value: str, field: str = "id_number", today: date | None = None) -> str:
    """A valid resident ID number of an adult, normalised (upper-case X), or a 422 naming the field."""
    try:
        number = ric.validate(_compact(value))
    except InvalidLength:
        raise _invalid(field, "居民身份证号码应为 18 位", "a resident ID number has 18 characters") from None
    except InvalidChecksum:
        raise _invalid(field, "居民身份证号码校验位错误", "the resident ID check digit is wrong") from None
    except InvalidComponent:
        # python-stdnum also refuses a region code that did not exist in the birth year, but numbers are
        # assigned at registration, often years after birth (someone born in 1990 and registered in 增城
        # in 2006 has 440183, a code of 1993–2014): a real date and a region that ever existed suffice
        number = _compact(value).upper()
        try:
            ric.get_birth_date(number)
        except InvalidComponent:
            raise _invalid(field, "居民身份证号码中的出生日期无效", "the birth date of the resident ID is invalid") from None
        if not _region_ever_existed(number[:6]):
            raise _invalid(field, "居民身份证号码中的地区码不存在", "unknown region code in the resident ID")
    except ValidationError:
        raise _invalid(field, "居民身份证号码格式错误", "the resident ID number is malformed") from None
    born = ric.get_birth_date(number)
    today = today or date.today()
    if born > today:
        raise _invalid(field, "居民身份证号码中的出生日期在未来", "the birth date of the resident ID is in the future")
    age = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
    if age < ADULT_AGE:
        raise _invalid(field, "竞买人须年满 18 周岁", "a person bidding must be at least 18 years old")
    return number


def social_credit_code(value: str, field: str = "id_number") -> str:
    """A valid unified social credit code, normalised to upper case, or a 422 naming the field."""
    try:
        return uscc.validate(_compact(value))
    except InvalidLength:
        raise _invalid(field, "统一社会信用代码应为 18 位", "a unified social credit code has 18 characters") from None
    except InvalidChecksum:
        raise _invalid(field, "统一社会信用代码校验位错误", "wrong check digit of the social credit code") from None
    except ValidationError:
        raise _invalid(
            field, "统一社会信用代码含有无效字符", "the unified social credit code contains invalid characters"
        ) from None


def identity_number(kind: str, value: str, field: str = "id_number") -> str:
    """The resident ID of a person or the unified social credit code of a company."""
    return resident_id(value, field) if kind == "person" else social_credit_code(value, field)


def person_or_company_number(value: str, field: str = "id_number") -> str:
    """A resident ID number or, failing that, a unified social credit code (a counterparty may be either)."""
    try:
        return resident_id(value, field)
    except DomainError as as_person:
        try:
            return social_credit_code(value, field)
        except DomainError:
            raise as_person if _compact(value)[:17].isdigit() else _invalid(
                field,
                "证件号码无效：须为有效的居民身份证号或统一社会信用代码",
                "expected a valid resident ID number or unified social credit code",
            ) from None


def mainland_mobile(value: str, field: str = "phone") -> str:
    """An 11-digit mainland mobile number (spaces and dashes allowed in input), or a 422."""
    number = re.sub(r"[\s-]", "", value).removeprefix("+86")
    if not MOBILE.match(number):
        raise _invalid(field, "手机号码应为 11 位大陆手机号", "expected an 11-digit mainland mobile number (1[3-9]…)")
    return number


def bank_account(value: str, field: str = "bank_account") -> str:
    """A bank account number of 6–32 digits (spaces and dashes allowed in input), or a 422."""
    number = re.sub(r"[\s-]", "", value)
    if not BANK_ACCOUNT.match(number):
        raise _invalid(field, "银行账号应为 6 至 32 位数字", "a bank account number has 6 to 32 digits")
    return number


def _region_ever_existed(code: str) -> bool:
    """Whether python-stdnum's division table knows this 6-digit county-level code at any time."""
    return any("county" in props for _, props in numdb.get("cn/loc").info(code))


def _compact(value: str) -> str:
    """Without the spaces and dashes people type to group the characters."""
    return re.sub(r"[\s-]", "", value)


def _invalid(field: str, message: str, message_en: str) -> DomainError:
    return DomainError(message, message_en, field=field, status_code=422)
