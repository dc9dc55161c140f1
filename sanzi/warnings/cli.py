"""`sanzi warnings ...`: full scan, integrity index, scenario generator."""

from __future__ import annotations

import click

groups: list[click.Group] = []
