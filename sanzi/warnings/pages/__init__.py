"""Warning pages: the supervisors' dashboard and alert review, the committee's alerts and responses, and the
admin's rule parameters (they belong to the rule catalogue, which lives here)."""

from __future__ import annotations

from typing import Any

from sanzi.warnings.pages import committee, parameters, supervision

controllers: list[Any] = [*supervision.controllers, *committee.controllers, parameters.RuleParameterPages]
