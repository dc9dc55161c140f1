"""The demo data is valid data: its identities pass the platform's own checks."""

from __future__ import annotations

from sanzi.platform import demo, identity


def test_demo_bidder_identities_are_valid() -> None:
    for fields in demo._BIDDERS.values():
        assert identity.identity_number(fields["kind"], fields["id_number"]) == fields["id_number"]
        assert identity.mainland_mobile(fields["phone"]) == fields["phone"]


def test_demo_contract_counterparties_are_valid() -> None:
    for _, body, _ in demo._DEMO_CONTRACTS:
        number = body["counterparty_id_number"]
        assert identity.person_or_company_number(number) == number
