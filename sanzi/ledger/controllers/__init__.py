"""Ledger HTTP API: the books, the asset registry and contracts of a village's collective."""

from __future__ import annotations

from typing import Any

from sanzi.ledger import pages
from sanzi.ledger.controllers import assets, books, contracts

controllers: list[Any] = [*books.controllers, *assets.controllers, *contracts.controllers, *pages.controllers]
