"""docs/import-format.md documents every file and column of the format, and no column that is not in it."""

from __future__ import annotations

import re

from sanzi.interchange import format as fmt
from sanzi.platform.settings import PROJECT_ROOT

DOC = PROJECT_ROOT / "docs" / "import-format.md"


def documented_columns() -> dict[str, list[str]]:
    """The first cell of every table row under each `### kind` heading."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"^### (\w+)$", line)
        if heading:
            current = heading.group(1)
            sections[current] = []
        elif current and (cell := re.match(r"^\| `(\w+)` \|", line)):
            sections[current].append(cell.group(1))
    return sections


def test_the_document_names_the_version_and_every_column_in_order() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert f"version {fmt.FORMAT_VERSION}" in text.splitlines()[0]
    documented = documented_columns()
    assert list(documented) == list(fmt.KIND_ORDER)
    for spec in fmt.SPECS:
        assert documented[spec.kind] == list(spec.column_names), spec.kind
