"""`sanzi ledger ...`: verify chains, publish the root."""

from __future__ import annotations

import click

groups: list[click.Group] = []
