"""Live auction and bidders' pages: watching an auction, sign-up, profile, applications, the bidding console,
and the supervisors' approval queues."""

from __future__ import annotations

from typing import Any

from sanzi.auction.pages.bidding import approvals, bidders, live

controllers: list[Any] = [*live.controllers, *bidders.controllers, *approvals.controllers]
