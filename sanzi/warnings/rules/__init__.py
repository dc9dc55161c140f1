"""The rule catalogue: bid irregularities, undisclosed transactions and election-period risks."""

from __future__ import annotations

import importlib

from sanzi.warnings.rules.base import Family, Finding, Rule, Scope

_MODULES = ("sanzi.warnings.rules.bids", "sanzi.warnings.rules.undisclosed", "sanzi.warnings.rules.election")


def all_rules() -> list[Rule]:
    """Every rule, from each family module's ``RULES`` list, in a stable order."""
    rules: list[Rule] = []
    for name in _MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        rules.extend(getattr(module, "RULES", []))
    return rules


__all__ = ["Family", "Finding", "Rule", "Scope", "all_rules"]
