"""Identity numbers (resident ID, unified social credit code), mobile numbers and bank accounts."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sanzi.platform import identity
from sanzi.platform.problems import DomainError

PERSON = "11010519491231002X"  # the example of GB 11643
COMPANY = "91350100M000100Y43"
TODAY = date(2026, 6, 1)


def refused(call, *args, **kwargs) -> DomainError:
    with pytest.raises(DomainError) as caught:
        call(*args, **kwargs)
    error = caught.value
    assert error.status_code == 422 and error.message and error.message_en
    assert any("\u4e00" <= ch <= "\u9fff" for ch in error.message)
    return error


def test_resident_id_is_normalised() -> None:
    assert identity.resident_id(" 110105 19491231 002x ", today=TODAY) == PERSON
    assert identity.identity_number("person", PERSON.lower()) == PERSON


@pytest.mark.parametrize(
    ("number", "fragment"),
    [
        ("11010519491231002", "18"),  # too short
        ("110105194912310021", "校验位"),  # wrong check digit
        ("110105194913310021", "出生日期"),  # month 13, with its right check digit
        ("A1010519491231002X", "格式"),
        ("000000194912310027", "地区码"),  # no such region, with its right check digit
    ],
)
def test_resident_id_refusals(number: str, fragment: str) -> None:
    error = refused(identity.resident_id, number, today=TODAY)
    assert error.field == "id_number"
    assert fragment in error.message  # the message says what is wrong, in Chinese


def test_region_codes_are_accepted_whenever_they_existed() -> None:
    """Numbers are assigned at registration: born 1990, registered in 增城市 (440183, 1993–2014) in 2006."""
    from stdnum.cn import ric

    body = "44018319900101123"
    number = body + ric.calc_check_digit(body + "0")
    assert not ric.is_valid(number)  # python-stdnum alone ties the region to the birth year
    assert identity.resident_id(number, today=TODAY) == number


def test_resident_id_of_a_minor_or_unborn_person_is_refused() -> None:
    from stdnum.cn import ric

    minor = "44011120100101123"
    minor += ric.calc_check_digit(minor + "0")
    assert "18" in refused(identity.resident_id, minor, today=TODAY).message
    assert identity.resident_id(minor, today=date(2028, 1, 1)) == minor  # 18 on 2028-01-01


def test_social_credit_code() -> None:
    assert identity.social_credit_code("91350100m000100y43") == COMPANY
    assert "校验位" in refused(identity.social_credit_code, "91350100M000100Y44").message
    assert "18" in refused(identity.social_credit_code, "91350100M000100Y4").message
    refused(identity.social_credit_code, "91350100M000100Z43")  # Z is not in the code's alphabet
    refused(identity.identity_number, "company", PERSON)  # a resident ID is not a company's code
    refused(identity.identity_number, "person", COMPANY)


@given(st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True))
def test_every_mainland_mobile_number_is_accepted(number: str) -> None:
    assert identity.mainland_mobile(number) == number
    assert identity.mainland_mobile(f"+86 {number[:3]}-{number[3:7]}-{number[7:]}") == number


@pytest.mark.parametrize(
    "number", ["12812345678", "1381234567", "138123456789", "abc", "010-12345678", "1381234567\u0660"]
)
def test_other_phone_numbers_are_refused(number: str) -> None:
    assert refused(identity.mainland_mobile, number).field == "phone"


@given(
    region=st.sampled_from(["110105", "310101", "440103", "440106", "440111", "440112", "440183", "440118"]),
    born=st.dates(date(1950, 1, 1), date(2000, 12, 31)),
    serial=st.from_regex(r"[0-9]{3}", fullmatch=True),
    position=st.integers(0, 16),
    delta=st.integers(1, 9),
)
def test_any_single_digit_change_of_a_valid_resident_id_is_caught(
    region: str, born: date, serial: str, position: int, delta: int
) -> None:
    """A valid number is accepted; changing any one of its first 17 digits is always refused."""
    from stdnum.cn import ric

    body = region + born.strftime("%Y%m%d") + serial
    number = body + ric.calc_check_digit(body + "0")
    assert identity.resident_id(number, today=TODAY) == number
    changed = number[:position] + str((int(number[position]) + delta) % 10) + number[position + 1 :]
    refused(identity.resident_id, changed, today=TODAY)


def test_bank_account() -> None:
    assert identity.bank_account("6222 0212 3456 7890 123") == "6222021234567890123"
    assert refused(identity.bank_account, "12-ab").field == "bank_account"
