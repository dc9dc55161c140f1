"""Auction HTTP API: listings and their lifecycle, registrations and deposits, live bidding and results."""

from __future__ import annotations

from typing import Any

from sanzi.auction import pages
from sanzi.auction.controllers import bidding, listings, registrations

controllers: list[Any] = [
    *listings.controllers,
    *registrations.controllers,
    *bidding.controllers,
    *pages.controllers,
]
