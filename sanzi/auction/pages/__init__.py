"""Auction pages: the public portal, bidders' pages and live bidding, the committee's listings, approvals."""

from __future__ import annotations

from typing import Any

from sanzi.auction.pages import bidding, committee, public

controllers: list[Any] = [*public.controllers, *bidding.controllers, *committee.controllers]
